"""The layers' assets and jobs by name: one list that the jobs, the planner and the workers share."""

SYMBOL_DAY_ASSETS = ["prices", "symbol_factor_exposures", "symbol_metrics"]  # in the order they read each other
SYMBOL_ASSETS = ["company_profiles", "fundamentals"]
# One asset per table the portfolio layer computes (and an import of a changed book deletes).
PORTFOLIO_ASSETS = [
    "position_values",
    "portfolio_snapshots",
    "portfolio_factor_exposures",
    "portfolio_sector_weights",
    "portfolio_risk",
    "portfolio_correlations",
    "stress_results",
]

SYMBOL_LAYER_JOB = "symbol_layer_job"
REFERENCE_DATA_JOB = "reference_data_job"
PORTFOLIO_LAYER_JOB = "portfolio_layer_job"
