"""Wiring of the billing process: prices, database, ledger, servicer, gRPC server."""

from __future__ import annotations

import logging

import grpc

from apirelay.billing.v1 import billing_pb2, billing_pb2_grpc
from services.billing import service
from services.billing.config import Settings
from services.billing.core import Ledger
from services.billing.database import create_schema, open_database
from services.billing.pricing import PriceBook
from services.billing.store import SqlBillingStore
from services.common.gateway_config import load_gateway_config
from services.common.grpc_server import StartedService, serve_until_signal, start_grpc_server
from services.common.interceptor import ServiceInterceptor
from services.common.metrics import start_metrics_server

logger = logging.getLogger(__name__)

SERVICE_NAME = billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name
ADMIN_METHODS = frozenset(f"/{SERVICE_NAME}/{method}" for method in ("AddCredit", "GetBalance"))


async def start(settings: Settings) -> StartedService:
    """Load prices, open the database, start serving; the caller stops the result."""
    prices = PriceBook.from_config(load_gateway_config(settings.config_path))
    database = open_database(settings.database_url)
    try:
        await create_schema(database)
        ledger = Ledger(SqlBillingStore(database), prices)
        servicer = service.BillingServicer(ledger)

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
    start_metrics_server(settings.metrics_addr)
    logger.info("billing ready: %s priced models on %s", len(prices.prices), database.dialect_name)
    return StartedService(running, [database.close])


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain."""
    started = await start(settings)
    await serve_until_signal(started, settings.shutdown_grace_s)
