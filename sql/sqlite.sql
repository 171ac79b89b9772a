-- factor_platform analytics schema, version 3, sqlite.
-- Generated from factor_platform/storage/schema.py by
--     python -m factor_platform.storage.schema
-- Do not edit by hand; a test asserts this file equals the generated DDL.

CREATE TABLE IF NOT EXISTS prices (
    symbol TEXT NOT NULL,
    date DATE NOT NULL,
    open REAL,
    high REAL,
    low REAL,
    close REAL,
    adj_close REAL,
    volume BIGINT,
    source TEXT,
    PRIMARY KEY (symbol, date)
);
CREATE INDEX IF NOT EXISTS ix_prices_date ON prices (date);

CREATE TABLE IF NOT EXISTS symbol_factor_exposures (
    symbol TEXT NOT NULL,
    date DATE NOT NULL,
    factor TEXT NOT NULL,
    beta REAL,
    alpha REAL,
    r_squared REAL,
    std_error REAL,
    p_value REAL,
    n_obs INTEGER,
    method TEXT,
    PRIMARY KEY (symbol, date, factor)
);
CREATE INDEX IF NOT EXISTS ix_symbol_factor_exposures_date ON symbol_factor_exposures (date);

CREATE TABLE IF NOT EXISTS symbol_metrics (
    symbol TEXT NOT NULL,
    date DATE NOT NULL,
    return_1d REAL,
    return_5d REAL,
    return_21d REAL,
    return_63d REAL,
    return_252d REAL,
    volatility_21d REAL,
    volatility_63d REAL,
    high_52w REAL,
    low_52w REAL,
    PRIMARY KEY (symbol, date)
);
CREATE INDEX IF NOT EXISTS ix_symbol_metrics_date ON symbol_metrics (date);

CREATE TABLE IF NOT EXISTS company_profiles (
    symbol TEXT NOT NULL,
    name TEXT,
    sector TEXT,
    industry TEXT,
    market_cap REAL,
    currency TEXT,
    updated_at TIMESTAMP,
    PRIMARY KEY (symbol)
);

CREATE TABLE IF NOT EXISTS fundamentals (
    symbol TEXT NOT NULL,
    period_end DATE NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (symbol, period_end, metric)
);

CREATE TABLE IF NOT EXISTS symbol_failures (
    symbol TEXT NOT NULL,
    stage TEXT NOT NULL,
    date DATE,
    error TEXT,
    attempts INTEGER DEFAULT 1 NOT NULL,
    first_seen TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    last_seen TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    status TEXT DEFAULT 'open' NOT NULL,
    PRIMARY KEY (symbol, stage),
    CONSTRAINT ck_symbol_failures_status CHECK (status IN ('open', 'skipped'))
);
CREATE INDEX IF NOT EXISTS ix_symbol_failures_stage_status ON symbol_failures (stage, status);

CREATE TABLE IF NOT EXISTS corporate_actions (
    symbol TEXT NOT NULL,
    date DATE NOT NULL,
    kind TEXT NOT NULL,
    value REAL NOT NULL,
    source TEXT,
    PRIMARY KEY (symbol, date, kind),
    CONSTRAINT ck_corporate_actions_kind CHECK (kind IN ('split', 'dividend'))
);

CREATE TABLE IF NOT EXISTS stale_partitions (
    asset TEXT NOT NULL,
    "key" TEXT NOT NULL,
    first_date DATE NOT NULL,
    last_date DATE NOT NULL,
    reason TEXT,
    recorded_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (asset, "key", first_date)
);

CREATE TABLE IF NOT EXISTS history_spans (
    asset TEXT NOT NULL,
    "key" TEXT NOT NULL,
    first_date DATE NOT NULL,
    last_date DATE NOT NULL,
    recorded_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (asset, "key", first_date)
);

CREATE TABLE IF NOT EXISTS price_rebasings (
    symbol TEXT NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    close_factor REAL,
    adj_factor REAL,
    before_date DATE,
    source TEXT,
    PRIMARY KEY (symbol, recorded_at)
);

CREATE TABLE IF NOT EXISTS portfolios (
    portfolio_id TEXT NOT NULL,
    name TEXT,
    starting_equity REAL,
    inception_date DATE,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    book_version INTEGER,
    PRIMARY KEY (portfolio_id)
);

CREATE TABLE IF NOT EXISTS positions (
    position_id TEXT NOT NULL,
    portfolio_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    position_type TEXT,
    investment_class TEXT,
    quantity REAL,
    entry_price REAL,
    entry_date DATE,
    exit_date DATE,
    exit_price REAL,
    underlying TEXT,
    strike REAL,
    expiration DATE,
    option_type TEXT,
    manual_market_value REAL,
    sector TEXT,
    PRIMARY KEY (position_id)
);
CREATE INDEX IF NOT EXISTS ix_positions_portfolio_id ON positions (portfolio_id);

CREATE TABLE IF NOT EXISTS position_values (
    portfolio_id TEXT NOT NULL,
    position_id TEXT NOT NULL,
    date DATE NOT NULL,
    price REAL,
    market_value REAL,
    exposure REAL,
    delta REAL,
    price_source TEXT,
    PRIMARY KEY (portfolio_id, position_id, date)
);
CREATE INDEX IF NOT EXISTS ix_position_values_portfolio_id_date ON position_values (portfolio_id, date);

CREATE TABLE IF NOT EXISTS portfolio_snapshots (
    portfolio_id TEXT NOT NULL,
    date DATE NOT NULL,
    equity REAL,
    cash REAL,
    long_exposure REAL,
    short_exposure REAL,
    gross_exposure REAL,
    net_exposure REAL,
    daily_pnl REAL,
    daily_return REAL,
    cumulative_pnl REAL,
    n_positions INTEGER,
    is_complete BOOLEAN,
    PRIMARY KEY (portfolio_id, date)
);

CREATE TABLE IF NOT EXISTS portfolio_factor_exposures (
    portfolio_id TEXT NOT NULL,
    date DATE NOT NULL,
    factor TEXT NOT NULL,
    beta REAL,
    exposure_dollar REAL,
    PRIMARY KEY (portfolio_id, date, factor)
);

CREATE TABLE IF NOT EXISTS portfolio_sector_weights (
    portfolio_id TEXT NOT NULL,
    date DATE NOT NULL,
    sector TEXT NOT NULL,
    weight REAL,
    PRIMARY KEY (portfolio_id, date, sector)
);

CREATE TABLE IF NOT EXISTS portfolio_risk (
    portfolio_id TEXT NOT NULL,
    date DATE NOT NULL,
    volatility_21d REAL,
    volatility_63d REAL,
    volatility_forecast REAL,
    hhi REAL,
    effective_n REAL,
    top3_weight REAL,
    top10_weight REAL,
    PRIMARY KEY (portfolio_id, date)
);

CREATE TABLE IF NOT EXISTS portfolio_correlations (
    portfolio_id TEXT NOT NULL,
    date DATE NOT NULL,
    symbol_a TEXT NOT NULL,
    symbol_b TEXT NOT NULL,
    rho REAL,
    cluster INTEGER,
    PRIMARY KEY (portfolio_id, date, symbol_a, symbol_b)
);

CREATE TABLE IF NOT EXISTS stress_results (
    portfolio_id TEXT NOT NULL,
    date DATE NOT NULL,
    scenario TEXT NOT NULL,
    pnl REAL,
    pnl_pct REAL,
    PRIMARY KEY (portfolio_id, date, scenario)
);

CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL,
    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (version)
);

INSERT INTO schema_version (version) VALUES (3) ON CONFLICT (version) DO NOTHING;
