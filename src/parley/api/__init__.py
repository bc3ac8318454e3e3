"""The HTTP edge: validates shapes, calls services, maps errors to the contract's table."""
