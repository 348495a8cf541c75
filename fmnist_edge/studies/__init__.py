"""Studies: many networks trained, converted and measured side by side (`fmnist-edge compare`, the sweeps)."""
