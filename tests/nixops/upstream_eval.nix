# The definitions of a rendered deployment, as JSON, for tests/nixops/upstream_check.py.
#
#   nix-instantiate --eval --strict --json upstream_eval.nix --argstr spec SPEC.json
#
# SPEC.json (written by upstream_check.py):
#   root       the deployment directory (absolute)
#   hosts      the hosts to evaluate: hosts/<host>.nix and every module it imports
#   skip       path prefixes not followed (the operator's base configuration, hosts/<host>/base/)
#   packages   the pkgs.<name> the modules use (each becomes a marker package)
#   defaults   the upstream defaults, as one attribute tree (engine/nixops/upstream_options.json)
#   flake      whether to evaluate flake.nix's outputs too
#   inputAttributes  the attributes the input stubs provide: { path = "nixops4.lib.mkRoot";
#              type = "function" | "module"; } from the facts' "flake" section
#   otherInputAttributes  the same for inputs the facts do not describe: what flake.nix reads
#              of them (`inputs.<name>.<attribute>…`), each a marker, so the rest is checked
#   flakeInputs  whether to return flake.nix's `inputs` alone (when its outputs cannot be
#              evaluated, its inputs are still checked)
#   catch      whether to catch a throw per host (the result then says { error = true; })
#
# Each module is called with stub arguments (upstream_stubs.nix) and a `config` that is the
# host's definitions merged the way the module system would: mkIf/mkMerge/mkOverride/mkOrder
# pushed down, the highest priority winning, lists concatenated, a value no module defines taken
# from the upstream defaults — reading one with neither is an error naming it. Nothing is
# type-checked here: the definitions come back as written, markers included, with functions,
# paths and packages replaced by { __function = true; }, { __path = "…"; }, { __pkg = "…"; }.
{ spec }:
let
  b = builtins;
  s = b.fromJSON (b.readFile spec);
  stubs = import ./upstream_stubs.nix { packageNames = s.packages; };
  inherit (stubs) lib pkgs;
  root = s.root;

  inside = p: lib.hasPrefix (root + "/") p;
  skipped = p: b.any (prefix: lib.hasPrefix prefix p) s.skip;
  isMarker = v: b.isAttrs v && v ? _type && b.elem v._type [ "if" "merge" "override" "order" ];
  isPackage = v: b.isAttrs v && v ? __fediRunPackage;
  isStub = v: b.isAttrs v && v ? __fediRunMarker;

  # --- values as JSON ---------------------------------------------------------------------------
  sanitize =
    v:
    if isPackage v then
      { __pkg = v.__fediRunPackage; }
    else if isStub v then
      { __marker = v.__fediRunMarker; }
    else if b.isFunction v then
      { __function = true; }
    else if b.isPath v then
      { __path = toString v; }
    else if b.isList v then
      map sanitize v
    else if b.isAttrs v then
      if v ? outPath then { __outPath = toString v.outPath; } else b.mapAttrs (_: sanitize) v
    else
      v;

  # The option paths an `options` tree declares (lib.mkOption markers), dotted.
  declared =
    prefix: v:
    if b.isAttrs v && (v._type or null) == "option" then
      [ (b.concatStringsSep "." prefix) ]
    else if b.isAttrs v && !(v ? _type) then
      b.concatMap (n: declared (prefix ++ [ n ]) v.${n}) (b.attrNames v)
    else
      [ (b.concatStringsSep "." prefix) ];

  # --- the module system's merge, for `config` -------------------------------------------------
  push =
    cond: prio: v:
    if isMarker v then
      if v._type == "if" then
        push (cond && v.condition) prio v.content
      else if v._type == "merge" then
        b.concatMap (push cond prio) v.contents
      else if v._type == "override" then
        push cond v.priority v.content
      else
        push cond prio v.content
    else
      [ { inherit cond prio; value = v; } ];

  mergeNode =
    path: defs:
    if b.length defs > 0 && b.all (d: b.isAttrs d.value && !(isPackage d.value) && !(isStub d.value)) defs then
      b.zipAttrsWith (n: lists: mergeNode (path ++ [ n ]) (b.concatLists lists)) (
        map (d: b.mapAttrs (_: push d.cond d.prio) d.value) defs
      )
    else
      let
        active = b.filter (d: d.cond) defs;
        best = b.foldl' (a: d: if d.prio < a then d.prio else a) 1000000 active;
        top = b.filter (d: d.prio == best) active;
      in
      if top == [ ] then
        throw "fedi-run checker: config.${b.concatStringsSep "." path} is read, but no module of the host defines it (or only under a false mkIf) and engine/nixops/upstream_options.json records no default for it"
      else if b.all (d: b.isList d.value) top then
        b.concatMap (d: d.value) top
      else
        (b.head top).value;

  mergeConfig = defaults: defsList:
    mergeNode [ ] (push true 1500 defaults ++ b.concatMap (push true 100) defsList);

  # --- modules and their imports ---------------------------------------------------------------
  moduleKeys = [ "_class" "_file" "key" "disabledModules" "imports" "options" "config" "meta" "freeformType" ];

  load =
    args: file: m:
    let
      v = if b.isFunction m then m args else m;
      attrs = b.isAttrs v;
      explicit = attrs && (v ? config || v ? options);
    in
    {
      inherit file;
      status = if attrs then "loaded" else "not-a-module";
      value = v;
      defs =
        if !attrs then
          { }
        else if explicit then
          v.config or { }
        else
          removeAttrs v [ "_class" "_file" "key" "disabledModules" "imports" "freeformType" ];
      unsupported = if explicit then b.attrNames (removeAttrs v moduleKeys) else [ ];
      options = if attrs then v.options or { } else { };
      imports = if attrs then v.imports or [ ] else [ ];
    };

  collect =
    args: file: m:
    let
      me = load args file m;
    in
    [ me ]
    ++ b.concatLists (
      b.genList (i: importOne args file i (b.elemAt me.imports i)) (b.length me.imports)
    );

  importOne =
    args: parent: i: x:
    if b.isPath x || b.isString x then
      let
        p = toString x;
      in
      if skipped p then
        [ { file = p; status = "skipped"; } ]
      else if !(inside p) then
        [ { file = p; status = "outside"; } ]
      else if !(b.pathExists p) then
        [ { file = p; status = "missing"; } ]
      else
        collect args p (import x)
    else if isStub x then
      [ { file = "${parent}, imports[${toString i}]"; status = "stub"; marker = x.__fediRunMarker; } ]
    else
      collect args "${parent}, imports[${toString i}]" x;

  shown = m:
    if m.status == "loaded" then
      {
        inherit (m) file status unsupported;
        defs = sanitize m.defs;
        options = if m.options == { } then [ ] else declared [ ] m.options;
        imports = map sanitize m.imports;
      }
    else
      removeAttrs m [ "value" "defs" "options" "imports" ];

  caught = v: if s.catch then let r = b.tryEval (b.deepSeq v v); in if r.success then r.value else { error = true; } else v;

  # --- hosts -----------------------------------------------------------------------------------
  host =
    name:
    let
      file = root + "/hosts/${name}.nix";
      args = {
        inherit config lib pkgs;
        options = { };
        modulesPath = "/<modulesPath>";
        utils = { };
        specialArgs = { };
      };
      modules = collect args file (import file);
      config = mergeConfig s.defaults (map (m: m.defs) (b.filter (m: m.status == "loaded") modules));
    in
    caught { modules = map shown modules; };

  # --- the flake -------------------------------------------------------------------------------
  stubValue =
    attribute:
    if attribute.type == "function" then
      args: {
        __fediRunMarker = attribute.path;
        __args = args;
      }
    else
      { __fediRunMarker = attribute.path; };

  inputStub =
    name:
    let
      own = b.filter (a: lib.hasPrefix "${name}." a.path) (s.inputAttributes ++ s.otherInputAttributes);
      tree = b.foldl' (acc: a: lib.recursiveUpdate acc (lib.setAttrByPath (b.tail (lib.splitString "." a.path)) (stubValue a))) { } own;
    in
    tree
    // {
      __fediRunMarker = "inputs.${name}";
      outPath = "/<input:${name}>";
    }
    // lib.optionalAttrs (name == "nixpkgs") {
      lib = lib // {
        nixosSystem = args: {
          __fediRunMarker = "nixpkgs.lib.nixosSystem";
          __args = args;
        };
      };
    };

  flake =
    let
      source = import (root + "/flake.nix");
      inputNames = b.attrNames (source.inputs or { });
      inputs = b.listToAttrs (map (n: { name = n; value = inputStub n; }) inputNames) // {
        self = {
          __fediRunMarker = "inputs.self";
          outPath = root;
        };
      };
      outputs = source.outputs inputs;
      rootValue = outputs.nixops4 or null;
      made = b.isAttrs rootValue && (rootValue.__fediRunMarker or null) == "nixops4.lib.mkRoot";
      rootArgs = if made then rootValue.__args else { };
    in
    caught {
      inputs = sanitize (source.inputs or { });
      outputNames = b.attrNames outputs;
      outputs = sanitize (removeAttrs outputs [ "nixops4" ]);
      nixops4 = if made then { __marker = "nixops4.lib.mkRoot"; } else sanitize rootValue;
      root =
        if made then
          component (rootArgs.specialArgs or { }) "outputs.nixops4" (rootArgs.modules or [ ])
        else
          null;
      mkRootArguments = if made then b.attrNames rootArgs else [ ];
      # the 2025 interface, evaluated only to name what it uses
      deployments =
        if b.isAttrs (outputs.nixops4Deployments or null) then
          b.mapAttrs (
            n: v:
            if isStub v && v ? __args then
              component { } "outputs.nixops4Deployments.${n}" (v.__args.modules or [ ])
            else
              null
          ) outputs.nixops4Deployments
        else
          { };
    };

  # A component: its modules (the definitions of one member, or mkRoot's modules), each with its
  # definitions and imports; its members evaluated in turn.
  component =
    specialArgs: path: values:
    let
      args = {
        inherit config lib providers;
        members = throw "fedi-run checker: the `members` module argument (the members' outputs) is not stubbed";
        options = { };
        resourceProviderSystem = "x86_64-linux";
        withResourceProviderSystem = f: f { inherit pkgs; system = "x86_64-linux"; };
      } // specialArgs;
      modules = b.concatLists (
        b.genList (i: collect args "${path}, module ${toString i}" (b.elemAt values i)) (b.length values)
      );
      loaded = b.filter (m: m.status == "loaded") modules;
      config = mergeConfig { } (map (m: removeAttrs m.defs [ "members" ]) loaded);
      providerNames = b.attrNames (b.foldl' (acc: m: acc // (plain (m.defs.providers or { }))) { } loaded);
      providers = b.listToAttrs (
        map (p: {
          name = p;
          value = b.listToAttrs (
            map (t: {
              name = t;
              value = { __fediRunMarker = "providers.${p}.${t}"; };
            }) [ "exec" "file" "state_file" "memo" ]
          );
        }) providerNames
      );
      memberDefs = b.zipAttrsWith (_: vs: vs) (
        b.concatMap (m: map (d: d.value) (b.filter (d: b.isAttrs d.value) (push true 100 (m.defs.members or { })))) loaded
      );
      members = b.mapAttrs (
        n: vs: component specialArgs "${path}.members.${n}" (b.concatMap plainList vs)
      ) memberDefs;
      shownModule = m: if m.status == "loaded" then shown (m // { defs = removeAttrs m.defs [ "members" ]; }) else m;
    in
    {
      modules = map shownModule modules;
      inherit members;
    };

  # mkIf/mkMerge around a member or the providers: their contents (conditions are not weighed).
  plain = v: if isMarker v then b.foldl' (a: d: a // d.value) { } (push true 100 v) else v;
  plainList = v: if isMarker v then map (d: d.value) (push true 100 v) else [ v ];
in
{
  hosts = b.listToAttrs (map (n: { name = n; value = host n; }) s.hosts);
}
// lib.optionalAttrs s.flake { inherit flake; }
// lib.optionalAttrs (s.flakeInputs or false) {
  flakeInputs = sanitize ((import (root + "/flake.nix")).inputs or { });
}
