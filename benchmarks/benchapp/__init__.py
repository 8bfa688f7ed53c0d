"""Models of the audit overhead benchmark: one table per audit library, the same columns in each."""
