-- factor_platform analytics schema, version 3, postgresql.
-- Generated from factor_platform/storage/schema.py by
--     python -m factor_platform.storage.schema
-- Do not edit by hand; a test asserts this file equals the generated DDL.

CREATE TABLE IF NOT EXISTS prices (
    symbol TEXT NOT NULL,
    date DATE NOT NULL,
    open DOUBLE PRECISION,
    high DOUBLE PRECISION,
    low DOUBLE PRECISION,
    close DOUBLE PRECISION,
    adj_close DOUBLE PRECISION,
    volume BIGINT,
    source TEXT,
    PRIMARY KEY (symbol, date)
);
CREATE INDEX IF NOT EXISTS ix_prices_date ON prices (date);

CREATE TABLE IF NOT EXISTS symbol_factor_exposures (
    symbol TEXT NOT NULL,
    date DATE NOT NULL,
    factor TEXT NOT NULL,
    beta DOUBLE PRECISION,
    alpha DOUBLE PRECISION,
    r_squared DOUBLE PRECISION,
    std_error DOUBLE PRECISION,
    p_value DOUBLE PRECISION,
    n_obs INTEGER,
    method TEXT,
    PRIMARY KEY (symbol, date, factor)
);
CREATE INDEX IF NOT EXISTS ix_symbol_factor_exposures_date ON symbol_factor_exposures (date);

CREATE TABLE IF NOT EXISTS symbol_metrics (
    symbol TEXT NOT NULL,
    date DATE NOT NULL,
    return_1d DOUBLE PRECISION,
    return_5d DOUBLE PRECISION,
    return_21d DOUBLE PRECISION,
    return_63d DOUBLE PRECISION,
    return_252d DOUBLE PRECISION,
    volatility_21d DOUBLE PRECISION,
    volatility_63d DOUBLE PRECISION,
    high_52w DOUBLE PRECISION,
    low_52w DOUBLE PRECISION,
    PRIMARY KEY (symbol, date)
);
CREATE INDEX IF NOT EXISTS ix_symbol_metrics_date ON symbol_metrics (date);

CREATE TABLE IF NOT EXISTS company_profiles (
    symbol TEXT NOT NULL,
    name TEXT,
    sector TEXT,
    industry TEXT,
    market_cap DOUBLE PRECISION,
    currency TEXT,
    updated_at TIMESTAMP WITHOUT TIME ZONE,
    PRIMARY KEY (symbol)
);

CREATE TABLE IF NOT EXISTS fundamentals (
    symbol TEXT NOT NULL,
    period_end DATE NOT NULL,
    metric TEXT NOT NULL,
    value DOUBLE PRECISION,
    PRIMARY KEY (symbol, period_end, metric)
);

CREATE TABLE IF NOT EXISTS symbol_failures (
    symbol TEXT NOT NULL,
    stage TEXT NOT NULL,
    date DATE,
    error TEXT,
    attempts INTEGER DEFAULT 1 NOT NULL,
    first_seen TIMESTAMP WITHOUT TIME ZONE DEFAULT timezone('utc', now()),
    last_seen TIMESTAMP WITHOUT TIME ZONE DEFAULT timezone('utc', now()),
    status TEXT DEFAULT 'open' NOT NULL,
    PRIMARY KEY (symbol, stage),
    CONSTRAINT ck_symbol_failures_status CHECK (status IN ('open', 'skipped'))
);
CREATE INDEX IF NOT EXISTS ix_symbol_failures_stage_status ON symbol_failures (stage, status);

CREATE TABLE IF NOT EXISTS corporate_actions (
    symbol TEXT NOT NULL,
    date DATE NOT NULL,
    kind TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    source TEXT,
    PRIMARY KEY (symbol, date, kind),
    CONSTRAINT ck_corporate_actions_kind CHECK (kind IN ('split', 'dividend'))
);

CREATE TABLE IF NOT EXISTS stale_partitions (
    asset TEXT NOT NULL,
    key TEXT NOT NULL,
    first_date DATE NOT NULL,
    last_date DATE NOT NULL,
    reason TEXT,
    recorded_at TIMESTAMP WITHOUT TIME ZONE DEFAULT timezone('utc', now()),
    PRIMARY KEY (asset, key, first_date)
);

CREATE TABLE IF NOT EXISTS history_spans (
    asset TEXT NOT NULL,
    key TEXT NOT NULL,
    first_date DATE NOT NULL,
    last_date DATE NOT NULL,
    recorded_at TIMESTAMP WITHOUT TIME ZONE DEFAULT timezone('utc', now()),
    PRIMARY KEY (asset, key, first_date)
);

CREATE TABLE IF NOT EXISTS price_rebasings (
    symbol TEXT NOT NULL,
    recorded_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    close_factor DOUBLE PRECISION,
    adj_factor DOUBLE PRECISION,
    before_date DATE,
    source TEXT,
    PRIMARY KEY (symbol, recorded_at)
);

CREATE TABLE IF NOT EXISTS portfolios (
    portfolio_id TEXT NOT NULL,
    name TEXT,
    starting_equity DOUBLE PRECISION,
    inception_date DATE,
    created_at TIMESTAMP WITHOUT TIME ZONE DEFAULT timezone('utc', now()),
    book_version INTEGER,
    PRIMARY KEY (portfolio_id)
);

CREATE TABLE IF NOT EXISTS positions (
    position_id TEXT NOT NULL,
    portfolio_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    position_type TEXT,
    investment_class TEXT,
    quantity DOUBLE PRECISION,
    entry_price DOUBLE PRECISION,
    entry_date DATE,
    exit_date DATE,
    exit_price DOUBLE PRECISION,
    underlying TEXT,
    strike DOUBLE PRECISION,
    expiration DATE,
    option_type TEXT,
    manual_market_value DOUBLE PRECISION,
    sector TEXT,
    PRIMARY KEY (position_id)
);
CREATE INDEX IF NOT EXISTS ix_positions_portfolio_id ON positions (portfolio_id);

CREATE TABLE IF NOT EXISTS position_values (
    portfolio_id TEXT NOT NULL,
    position_id TEXT NOT NULL,
    date DATE NOT NULL,
    price DOUBLE PRECISION,
    market_value DOUBLE PRECISION,
    exposure DOUBLE PRECISION,
    delta DOUBLE PRECISION,
    price_source TEXT,
    PRIMARY KEY (portfolio_id, position_id, date)
);
CREATE INDEX IF NOT EXISTS ix_position_values_portfolio_id_date ON position_values (portfolio_id, date);

CREATE TABLE IF NOT EXISTS portfolio_snapshots (
    portfolio_id TEXT NOT NULL,
    date DATE NOT NULL,
    equity DOUBLE PRECISION,
    cash DOUBLE PRECISION,
    long_exposure DOUBLE PRECISION,
    short_exposure DOUBLE PRECISION,
    gross_exposure DOUBLE PRECISION,
    net_exposure DOUBLE PRECISION,
    daily_pnl DOUBLE PRECISION,
    daily_return DOUBLE PRECISION,
    cumulative_pnl DOUBLE PRECISION,
    n_positions INTEGER,
    is_complete BOOLEAN,
    PRIMARY KEY (portfolio_id, date)
);

CREATE TABLE IF NOT EXISTS portfolio_factor_exposures (
    portfolio_id TEXT NOT NULL,
    date DATE NOT NULL,
    factor TEXT NOT NULL,
    beta DOUBLE PRECISION,
    exposure_dollar DOUBLE PRECISION,
    PRIMARY KEY (portfolio_id, date, factor)
);

CREATE TABLE IF NOT EXISTS portfolio_sector_weights (
    portfolio_id TEXT NOT NULL,
    date DATE NOT NULL,
    sector TEXT NOT NULL,
    weight DOUBLE PRECISION,
    PRIMARY KEY (portfolio_id, date, sector)
);

CREATE TABLE IF NOT EXISTS portfolio_risk (
    portfolio_id TEXT NOT NULL,
    date DATE NOT NULL,
    volatility_21d DOUBLE PRECISION,
    volatility_63d DOUBLE PRECISION,
    volatility_forecast DOUBLE PRECISION,
    hhi DOUBLE PRECISION,
    effective_n DOUBLE PRECISION,
    top3_weight DOUBLE PRECISION,
    top10_weight DOUBLE PRECISION,
    PRIMARY KEY (portfolio_id, date)
);

CREATE TABLE IF NOT EXISTS portfolio_correlations (
    portfolio_id TEXT NOT NULL,
    date DATE NOT NULL,
    symbol_a TEXT NOT NULL,
    symbol_b TEXT NOT NULL,
    rho DOUBLE PRECISION,
    cluster INTEGER,
    PRIMARY KEY (portfolio_id, date, symbol_a, symbol_b)
);

CREATE TABLE IF NOT EXISTS stress_results (
    portfolio_id TEXT NOT NULL,
    date DATE NOT NULL,
    scenario TEXT NOT NULL,
    pnl DOUBLE PRECISION,
    pnl_pct DOUBLE PRECISION,
    PRIMARY KEY (portfolio_id, date, scenario)
);

CREATE TABLE IF NOT EXISTS schema_version (
    version SERIAL NOT NULL,
    applied_at TIMESTAMP WITHOUT TIME ZONE DEFAULT timezone('utc', now()),
    PRIMARY KEY (version)
);

INSERT INTO schema_version (version) VALUES (3) ON CONFLICT (version) DO NOTHING;
