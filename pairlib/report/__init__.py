"""What reports show: notebook outputs and the charts of each report."""
