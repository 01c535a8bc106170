"""The revisions every rendered deployment pins: its flake inputs, each at an exact commit.

The flake of ``.fedi-run/<name>/`` (``templates/flake.nix.j2``) takes :data:`FLAKE_INPUTS`,
with each name in :data:`FOLLOWS_NIXPKGS` given our nixpkgs as its own, so one nixpkgs is
evaluated. An operator overrides any of them from the playbook (``[deployment] inputs``, see
:func:`~fedi_run.engine.nixops.render.flake_inputs`); docs/nixops.md says how and why.

Where each revision comes from (read in the repositories themselves, at these commits):

``nixops4-nixos`` — ``github:nixops4/nixops4-nixos`` at 18e3a695e544524081d6c0bd29cc73f4d540739b
    (2026-07-03), the NixOS component ``modules.nixops4Component.nixos`` (its ``main-module.nix``
    and ``modules/nixops4Resource/nixos.nix``) after nixops4-nixos PR #13.
``nixops4`` — ``github:nixops4/nixops4`` at 548be5db9291357882141742845f67d72e9d7ab0
    (2026-07-03), ``lib.mkRoot`` and nested ``members`` (``nix/lib/lib.nix``,
    ``nix/component/members.nix``) after nixops4 PR #110 "single root export": the revision
    nixops4-nixos's own ``dev/flake.lock`` locks at the commit above, so the pair is the one
    nixops4-nixos's checks run. nixops4-nixos's top-level flake has no ``nixops4`` input (only
    its ``dev`` partition does), so ``nixops4.follows = "nixops4-nixos/nixops4"`` cannot be
    written: the same revision is pinned directly.
``nixpkgs`` — ``github:NixOS/nixpkgs`` at b5aa0fbd538984f6e3d201be0005b4463d8b09f8
    (nixos-unstable of 2026-06-29): what nixops4-nixos's ``flake.lock`` and ``dev/flake.lock``
    both lock at the commit above. No commit of a release branch could be checked against
    nixops4-nixos; an operator who wants one overrides ``nixpkgs``.
"""

from __future__ import annotations

NIXOPS4_NIXOS_REV = "18e3a695e544524081d6c0bd29cc73f4d540739b"
NIXOPS4_REV = "548be5db9291357882141742845f67d72e9d7ab0"
NIXPKGS_REV = "b5aa0fbd538984f6e3d201be0005b4463d8b09f8"

FLAKE_INPUTS: dict[str, str] = {
    "nixpkgs": f"github:NixOS/nixpkgs/{NIXPKGS_REV}",
    "nixops4": f"github:nixops4/nixops4/{NIXOPS4_REV}",
    "nixops4-nixos": f"github:nixops4/nixops4-nixos/{NIXOPS4_NIXOS_REV}",
}
"""Input name → flake reference, every one at an exact revision (sources: the module
docstring)."""

FOLLOWS_NIXPKGS: tuple[str, ...] = ("nixops4", "nixops4-nixos")
"""The inputs whose own ``nixpkgs`` input follows the deployment's (``inputs.<name>.inputs
.nixpkgs.follows = "nixpkgs"``), as nixops4-nixos's ``dev/flake.nix`` has nixops4's follow
its nixpkgs."""
