# TEST DOUBLE of the nixops4 flake's interface — not NixOps4. fedi-run's tests evaluate the
# rendered deployment with Nix's own flake machinery, offline, with this flake in place of the
# `nixops4` input (tests/nixops/test_flake_layouts.py). It provides exactly what the rendered
# flake uses, as github:nixops4/nixops4 at 548be5db9291357882141742845f67d72e9d7ab0 defines it:
#
#   lib.mkRoot { modules; specialArgs ? { }; prefix ? [ ]; }
#     -> { _type = "nixops4Component"; rootFunction; getProviders; }       (nix/lib/lib.nix)
#   nixops4 reads the flake's outputs.nixops4                  (rust/nixops4-eval/src/eval.rs)
#   every component has `members`, nested components: a member whose `type` is set is a
#     resource, any other a composite of its own members   (nix/component/members.nix, export.nix)
#   `providers.<name> = <provider>` makes the module argument `providers.<name>.<resource type>`
#                                                       (nix/component/provider-declarations.nix)
#   modules.nixops4Provider.local, with the resource type `exec`      (nix/providers/local.nix)
#
# NixOps4 evaluates the components with nixpkgs' module system, which is not available here, so
# this double merges the modules itself: attribute sets key by key (two different definitions of
# one value are an error), `imports` followed, and a resource checked against the options its
# imported component declares (in the nixops4-nixos double's form, `options` and `build`): a
# definition no option declares, a value of the wrong type or a required option left unset is
# an error, as it is in NixOps4. rootFunction returns the component tree (each resource with the
# checked option values as `settings`, for the tests to read).
{
  description = "TEST DOUBLE of the nixops4 interface fedi-run's rendered deployment uses";

  # the real flake has a nixpkgs input, which the rendered deployment makes follow its own
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/b5aa0fbd538984f6e3d201be0005b4463d8b09f8";

  outputs =
    { self, ... }:
    let
      inherit (builtins)
        all
        any
        attrNames
        concatMap
        concatStringsSep
        elem
        filter
        foldl'
        head
        isAttrs
        isBool
        isFunction
        isList
        isPath
        isString
        length
        listToAttrs
        mapAttrs
        ;
      fail = path: message: throw "nixops4 (test double): ${concatStringsSep "." path}: ${message}";
      unique = foldl' (seen: x: if elem x seen then seen else seen ++ [ x ]) [ ];

      # a module and everything it imports, as plain attribute sets
      resolve =
        args: module:
        let
          loaded = if isPath module then import module else module;
          value = if isFunction loaded then loaded args else loaded;
        in
        if !isAttrs value then
          throw "nixops4 (test double): a module is neither an attribute set nor a function"
        else
          [ (removeAttrs value [ "imports" ]) ] ++ concatMap (resolve args) (value.imports or [ ]);

      merge =
        path: definitions:
        if length definitions == 1 then
          head definitions
        else if all (d: isAttrs d && !(d ? _type)) definitions then
          listToAttrs (
            map (name: {
              inherit name;
              value = merge (path ++ [ name ]) (
                concatMap (d: if d ? ${name} then [ d.${name} ] else [ ]) definitions
              );
            }) (unique (concatMap attrNames definitions))
          )
        else if all (d: d == head definitions) definitions then
          head definitions
        else
          fail path "conflicting definitions";

      checkType =
        path: type: value:
        let
          ok =
            if type == "str" then
              isString value
            else if type == "nullOr str" then
              value == null || isString value
            else if type == "bool" then
              isBool value
            else if type == "flake" then
              isAttrs value
            else if type == "deferredModule" then
              isAttrs value || isFunction value || isPath value
            else
              true; # raw
        in
        if ok then value else fail path "is not of type ${type}";

      getPath =
        path: set:
        foldl' (
          found: name: if found != null && isAttrs found && found ? ${name} then found.${name} else null
        ) set path;

      hasPath =
        path: set:
        path == [ ]
        || (isAttrs set && set ? ${head path} && hasPath (builtins.tail path) set.${head path});

      # the definitions under `value` that no option in `declared` covers
      undeclared =
        declared: prefix: value:
        concatMap (
          name:
          let
            path = prefix ++ [ name ];
            dotted = concatStringsSep "." path;
          in
          if declared ? ${dotted} then
            [ ]
          else if
            isAttrs value.${name} && any (o: hasPrefix "${dotted}." o) (attrNames declared)
          then
            undeclared declared path value.${name}
          else
            [ dotted ]
        ) (attrNames value);

      hasPrefix =
        prefix: string: builtins.substring 0 (builtins.stringLength prefix) string == prefix;

      reserved = [
        "type"
        "members"
        "providers"
      ];

      component =
        path: modules:
        let
          arguments = {
            inherit config providers members;
            name = if path == [ ] then "root" else builtins.elemAt path (length path - 1);
          };
          resolved = concatMap (resolve arguments) modules;
          declared = foldl' (all: m: all // (m.options or { })) { } resolved;
          builders = concatMap (m: if m ? build then [ m.build ] else [ ]) resolved;
          config = merge path (map (m: removeAttrs m [ "options" "build" ]) resolved);
          providers = mapAttrs (
            name: provider:
            mapAttrs (
              type: resourceType:
              resourceType
              // {
                _type = "nixops4ResourceType";
                inherit type;
                provider = {
                  inherit (provider) executable;
                  args = provider.args or [ ];
                  type = "stdio";
                };
              }
            ) provider.resourceTypes
          ) (config.providers or { });
          members = mapAttrs (name: member: component (path ++ [ name ]) [ member ]) (
            config.members or { }
          );
          settings = mapAttrs (
            dotted: option:
            let
              optionPath = builtins.filter isString (builtins.split "\\." dotted);
              value = getPath optionPath config;
            in
            if hasPath optionPath config then
              checkType (path ++ optionPath) option.type value
            else if option ? default then
              option.default
            else
              fail (path ++ optionPath) "is used but not defined (a required option)"
          ) declared;
          extra = undeclared declared [ ] (removeAttrs config reserved);
          resource =
            if !(config.type._type or null == "nixops4ResourceType") then
              fail path "`type` is not a resource type of a provider (providers.<name>.<type>)"
            else if extra != [ ] then
              fail path "no option declares ${concatStringsSep ", " extra} (the option does not exist)"
            else if builders == [ ] then
              fail path "a resource needs a component module (imports) that builds its inputs"
            else
              {
                resource = {
                  type = config.type.type;
                  inherit (config.type) provider;
                  inputs = (head builders settings).inputs;
                };
                inherit settings;
                built = head builders settings;
              };
        in
        if config ? type then resource else { members = mapAttrs (_: m: m) members; };
    in
    {
      lib.mkRoot =
        {
          modules,
          specialArgs ? { },
          prefix ? [ ],
        }:
        if !isList modules then
          throw "nixops4 (test double): mkRoot: modules must be a list"
        else
          {
            _type = "nixops4Component";
            rootFunction = _: component [ ] modules;
            getProviders = _: throw "nixops4 (test double): getProviders is not part of the double";
          };

      modules.nixops4Provider.local = {
        name = "Local Provider (test double)";
        executable = "/nonexistent/nixops4-resources-local-test-double";
        resourceTypes.exec = {
          requireState = false;
        };
      };
    };
}
