"""Pure rules: the strategy, sizing and caps, the portfolio plan, cointegration, pair
selection and performance metrics. Imports only the foundation (errors, config, checks):
never the venue, the store or the clock."""
