"""The NixOps4 deployment: Nix values and modules, rendering it, and applying it last."""
