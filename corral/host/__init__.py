"""The host side: what runs on the machine of the job directories (the agent, the runner)."""
