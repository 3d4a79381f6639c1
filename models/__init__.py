"""The domain classifier and the risk scorer: training, evaluation, versioned artifacts."""
