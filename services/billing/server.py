"""Wiring of the billing process: prices, database, ledger, servicer, sweeper, gRPC server."""

from __future__ import annotations

import logging

import grpc

from apirelay.billing.v1 import billing_pb2, billing_pb2_grpc
from services.billing import service
from services.billing.admin import LedgerAdmin
from services.billing.admin_store import SqlAdminStore
from services.billing.config import Settings
from services.billing.core import Ledger, utc_now
from services.billing.database import create_schema, open_database
from services.billing.expiry import ExpirySweeper
from services.billing.pricing import PriceBook
from services.billing.store import SqlBillingStore
from services.billing.usage_service import UsageQueries
from services.common.gateway_config import load_gateway_config
from services.common.grpc_server import StartedService, serve_until_signal, start_grpc_server
from services.common.interceptor import ServiceInterceptor
from services.common.metrics import start_metrics_server

logger = logging.getLogger(__name__)

SERVICE_NAME = billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name
# The methods the proto's service comment marks admin-only; the request path (reserve,
# settle, release, redeem, prices) is open to the gateway's own services.
ADMIN_METHODS = frozenset(
    f"/{SERVICE_NAME}/{method}"
    for method in (
        "AddCredit",
        "AdjustCredit",
        "SetCreditLimit",
        "GetBalance",
        "SetKeyBudget",
        "GetKeyBudget",
        "CreateRedemptionCodes",
        "ListLedgerEntries",
        "CheckLedger",
        "ExpireHolds",
        "ListUsage",
        "GetDailyUsage",
    )
)


async def start(settings: Settings) -> StartedService:
    """Load prices, open the database, start serving and sweeping; the caller stops it."""
    prices = PriceBook.from_config(load_gateway_config(settings.config_path))
    database = open_database(settings.database_url)
    try:
        await create_schema(database)
        ledger = Ledger(SqlBillingStore(database), prices, utc_now, hold_ttl_s=settings.hold_ttl_s)
        admin = LedgerAdmin(ledger, SqlAdminStore(database), utc_now)
        servicer = service.BillingServicer(ledger, admin, UsageQueries(database))

        def register(server: grpc.aio.Server) -> None:
            billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)

        running = await start_grpc_server(
            settings.listen_addr,
            register,
            [SERVICE_NAME],
            ServiceInterceptor(service.ERRORS, ADMIN_METHODS, settings.admin_key),
        )
    except BaseException:
        await database.close()
        raise
    sweeper = ExpirySweeper(ledger, settings.expiry_interval)
    sweeper.start()
    start_metrics_server(settings.metrics_addr)
    logger.info("billing ready: %s priced models on %s", len(prices.prices), database.dialect_name)
    # Cleanups run in reverse: the sweeper stops before the database closes.
    return StartedService(running, [database.close, sweeper.stop])


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain."""
    started = await start(settings)
    await serve_until_signal(started, settings.shutdown_grace.total_seconds())
