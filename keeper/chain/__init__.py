"""Chain access: JSON-RPC with failover, the deployment file, the event-sourced account index."""
