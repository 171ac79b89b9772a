"""factor_platform: market data, factor risk and P&L as partitioned Dagster assets."""
