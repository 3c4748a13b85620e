"""The billing service: prices, wallets, holds, the ledger and usage records."""
