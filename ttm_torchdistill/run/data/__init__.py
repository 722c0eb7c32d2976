"""The run's data: datasets (real or synthetic), the device-resident data path and the teacher-logit cache."""
