"""Model families behind one contract (``contract.Method``), registered by name (``registry``)."""
