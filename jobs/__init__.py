"""What data engineers run and schedule: the ``riskwatch`` command line."""
