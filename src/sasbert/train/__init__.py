"""Training stage: the SAS regularizer, its lambda schedules, and MLM pretraining."""
