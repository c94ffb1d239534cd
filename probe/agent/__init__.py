"""The agent, `registry-probe run`: the scheduler, the HTTP server, logs, and the command."""
