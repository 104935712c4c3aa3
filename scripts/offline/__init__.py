"""Offline machinery for `backupctl preview`, `backupctl demo`, CI and the tests: the Pulumi mock
engine, the policy gate, the moto emulator, the stand-in production account and the model-checked
partial stubber. Nothing here is used against real AWS."""
