# TEST DOUBLE of the nixpkgs flake's interface — not nixpkgs. fedi-run's tests evaluate the
# rendered deployment with Nix's own flake machinery, offline, with this flake in place of the
# `nixpkgs` input (tests/nixops/test_flake_layouts.py). It provides exactly what the rendered
# deployment reaches of nixpkgs through nixops4-nixos: `lib.nixosSystem { modules; specialArgs;
# }` (nixpkgs' flake.nix at b5aa0fbd538984f6e3d201be0005b4463d8b09f8, the revision fedi-run
# pins), called without `system`, as nixops4-nixos calls it.
#
# It does not evaluate NixOS. It reads the host's modules two levels deep — the component's
# `nixos.module` and the host module it imports (hosts/<host>.nix) — with a `lib` holding only
# `mkDefault`: their `nixpkgs.hostPlatform` (required: without `system`, nixpkgs fails when it
# is unset), their `system.stateVersion`, and the files they import, each of which must exist in
# the flake's source (Nix copies only the files git tracks, so an untracked import is missing).
{
  description = "TEST DOUBLE of the nixpkgs interface fedi-run's rendered deployment uses";

  outputs =
    { self }:
    let
      inherit (builtins)
        concatMap
        filter
        isAttrs
        isFunction
        isPath
        map
        pathExists
        ;
      lib = {
        mkDefault = content: {
          _type = "override";
          priority = 1000;
          inherit content;
        };
      };
      load =
        module:
        let
          loaded = if isPath module then import module else module;
        in
        if isFunction loaded then
          loaded {
            inherit lib;
            config = throw "nixpkgs (test double): config is not evaluated";
            pkgs = throw "nixpkgs (test double): pkgs is not evaluated";
          }
        else
          loaded;
      unwrap = value: if isAttrs value && value._type or null == "override" then value.content else value;
      fail = message: throw "nixpkgs (test double): nixosSystem: ${message}";
    in
    {
      lib.nixosSystem =
        {
          modules,
          specialArgs ? { },
          ...
        }@arguments:
        let
          top = map load modules;
          imported = concatMap (m: m.imports or [ ]) top;
          hosts = map load (filter isPath imported);
          files = concatMap (m: m.imports or [ ]) hosts;
          defined =
            name: value: filter (v: v != null) (map (m: unwrap (value m)) (top ++ hosts));
          platforms = defined "nixpkgs.hostPlatform" (m: m.nixpkgs.hostPlatform or null);
          stateVersions = defined "system.stateVersion" (m: m.system.stateVersion or null);
          missing = filter (f: !(isPath f && pathExists f)) (imported ++ files);
        in
        if arguments ? system then
          fail "nixops4-nixos calls nixosSystem without `system`; the double expects that too"
        else if platforms == [ ] then
          fail "neither nixpkgs.hostPlatform nor nixpkgs.system is set (nixosSystem was called without system)"
        else if missing != [ ] then
          fail "imported files missing from the flake's source: ${toString missing}"
        else
          {
            _type = "configuration";
            inherit specialArgs;
            config = {
              nixpkgs.hostPlatform = builtins.head platforms;
              system.stateVersion = if stateVersions == [ ] then null else builtins.head stateVersions;
              system.build.toplevel = "/nix/store/00000000000000000000000000000000-nixos-system-test-double";
            };
            imports = map toString (imported ++ files);
          };
    };
}
