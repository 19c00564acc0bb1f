"""The contract every connector and its emulator must pass (contract.py, test_contract.py), and
each service's harness for it (harness_<service id>.py)."""
