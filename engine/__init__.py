"""failover-engine: a declarative failover engine (policy, state machine, runner, monitor, CLI)."""
