"""Domain services: the rules. They import neither FastAPI nor the gateway."""
