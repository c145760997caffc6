"""Datasets: the shared item/split types, few-shot sampling, base/novel splits, dataset registry."""
