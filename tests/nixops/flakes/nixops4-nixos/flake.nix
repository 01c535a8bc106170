# TEST DOUBLE of the nixops4-nixos flake's interface — not nixops4-nixos. fedi-run's tests
# evaluate the rendered deployment with Nix's own flake machinery, offline, with this flake in
# place of the `nixops4-nixos` input (tests/nixops/test_flake_layouts.py). It provides exactly
# what the rendered flake uses, as github:nixops4/nixops4-nixos at
# 18e3a695e544524081d6c0bd29cc73f4d540739b defines it:
#
#   modules.nixops4Component.nixos                                           (main-module.nix)
#   with the options of modules/nixops4Resource/nixos.nix:
#     nixpkgs               a flake, required                      (types.flake or types.raw)
#     nixos.module          deferredModule, required
#     nixos.specialArgs     raw, default { }
#     ssh.user              nullOr str, default "root"
#     ssh.host              str, required
#     ssh.hostPublicKey     str, required
#     ssh.opts              str, default "" (there is no port option: "-o Port=N" goes here)
#     copy.substituteOnDestination  bool, default true
#     sudo.enable           bool, default: ssh.user is not "root"
#   and the configuration it builds: nixpkgs.lib.nixosSystem { modules = [ nixos.module … ];
#   specialArgs; } — called without `system`, so the host's modules must set
#   nixpkgs.hostPlatform — and the known_hosts line "${ssh.host} ${ssh.hostPublicKey}" its
#   ssh and `nix copy` check the host against (StrictHostKeyChecking=yes).
#
# The options are declared in the nixops4 double's form (`options`, `build`), since the module
# system of nixpkgs is not available here. The real component also imports its `apply` NixOS
# module into the configuration; the double leaves it out.
{
  description = "TEST DOUBLE of the nixops4-nixos interface fedi-run's rendered deployment uses";

  # the real flake has a nixpkgs input, which the rendered deployment makes follow its own
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/b5aa0fbd538984f6e3d201be0005b4463d8b09f8";

  outputs =
    { self, ... }:
    {
      modules.nixops4Component.nixos = {
        options = {
          "nixpkgs".type = "flake";
          "nixos.module".type = "deferredModule";
          "nixos.specialArgs" = {
            type = "raw";
            default = { };
          };
          "ssh.user" = {
            type = "nullOr str";
            default = "root";
          };
          "ssh.host".type = "str";
          "ssh.hostPublicKey".type = "str";
          "ssh.opts" = {
            type = "str";
            default = "";
          };
          "copy.substituteOnDestination" = {
            type = "bool";
            default = true;
          };
          "sudo.enable" = {
            type = "bool";
            default = null; # computed from ssh.user below, as upstream's default is
          };
        };
        build =
          settings:
          let
            user = settings."ssh.user";
            configuration = settings.nixpkgs.lib.nixosSystem {
              modules = [ settings."nixos.module" ];
              specialArgs = settings."nixos.specialArgs";
            };
          in
          {
            nixos = { inherit configuration; };
            knownHosts = "${settings."ssh.host"} ${settings."ssh.hostPublicKey"}\n";
            sudo =
              if settings."sudo.enable" == null then user != "root" else settings."sudo.enable";
            inputs = {
              executable = "/nonexistent/bash-test-double";
              args = [
                "-c"
                "nixops4-nixos apply script (test double)"
                ((if user != null then "${user}@" else "") + settings."ssh.host")
                configuration.config.system.build.toplevel
              ];
            };
          };
      };
    };
}
