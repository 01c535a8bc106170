# Stub arguments for evaluating rendered modules without NixOS (tests/nixops/upstream_eval.nix).
#
# `lib`: the few library functions modules use. The mk* functions build the same markers as
# nixpkgs' lib (`{ _type = "if"; condition; content; }`, "merge", "override", "order"), so a
# definition stays inspectable: tests/nixops/upstream_check.py unwraps them and records their
# conditions and priorities. lib.mkOption returns a marker too, so a module that declares options
# evaluates and the checker can name what it declares.
#
# `pkgs`: each package is a marker derivation whose outPath is "/nix/store/<pkg:NAME>";
# `packageNames` lists the names to provide (upstream_check.py collects them from the modules).
# Written for fedi-run's checker; nothing here is taken from nixpkgs.
{ packageNames ? [ ] }:
let
  b = builtins;

  mkOverride = priority: content: {
    _type = "override";
    inherit priority content;
  };
  mkOrder = priority: content: {
    _type = "order";
    inherit priority content;
  };
  regexSpecial = [ "\\" "." "*" "+" "?" "(" ")" "[" "]" "{" "}" "|" "^" "$" ];
  escapeRegex = b.replaceStrings regexSpecial (map (c: "\\" + c) regexSpecial);
  lower = b.genList (i: b.substring i 1 "abcdefghijklmnopqrstuvwxyz") 26;
  upper = b.genList (i: b.substring i 1 "ABCDEFGHIJKLMNOPQRSTUVWXYZ") 26;

  lib = rec {
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    inherit mkOverride mkOrder;
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;
    mkOptionDefault = mkOverride 1500;
    mkImageMediaOverride = mkOverride 60;
    mkVMOverride = mkOverride 10;
    mkBefore = mkOrder 500;
    mkAfter = mkOrder 1500;
    modules.defaultOverridePriority = 100;

    mkOption = attrs: { _type = "option"; } // attrs;
    mkEnableOption = description: mkOption { inherit description; };
    mkPackageOption = _pkgs: name: _extra: mkOption { description = "package ${toString name}"; };
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };
    literalMD = text: {
      _type = "literalMD";
      inherit text;
    };
    types = b.listToAttrs (
      map (n: {
        name = n;
        value = { _type = "option-type"; name = n; };
      }) [ "str" "bool" "int" "path" "package" "lines" "attrs" "anything" "raw" "port" ]
    );

    id = x: x;
    const = x: _: x;
    flip = f: x: y: f y x;
    pipe = b.foldl' (x: f: f x);
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalString = cond: s: if cond then s else "";
    optionalAttrs = cond: set: if cond then set else { };
    boolToString = x: if x then "true" else "false";
    warn = _message: x: x;
    warnIf = _cond: _message: x: x;
    throwIf = cond: message: x: if cond then throw message else x;
    throwIfNot = cond: message: x: if cond then x else throw message;
    assertMsg = cond: message: cond || throw message;

    inherit (b)
      attrNames attrValues concatLists concatMap concatStringsSep elem elemAt filter foldl'
      fromJSON hasAttr head isAttrs isBool isFunction isInt isList isString length listToAttrs
      mapAttrs readFile replaceStrings seq deepSeq tail toJSON
      ;
    isDerivation = x: b.isAttrs x && x ? type && x.type == "derivation";
    concatStrings = b.concatStringsSep "";
    concatMapStrings = f: xs: b.concatStringsSep "" (map f xs);
    concatMapStringsSep = sep: f: xs: b.concatStringsSep sep (map f xs);
    concatLines = xs: b.concatStringsSep "" (map (x: x + "\n") xs);
    flatten = x: if b.isList x then b.concatMap flatten x else [ x ];
    toList = x: if b.isList x then x else [ x ];
    last = xs: b.elemAt xs (b.length xs - 1);
    count = pred: xs: b.length (b.filter pred xs);
    any = b.any;
    all = b.all;
    unique = b.foldl' (acc: x: if b.elem x acc then acc else acc ++ [ x ]) [ ];
    range = first: last: if first > last then [ ] else b.genList (n: first + n) (last - first + 1);
    foldr =
      op: nul: xs:
      let
        n = b.length xs;
        go = i: if i == n then nul else op (b.elemAt xs i) (go (i + 1));
      in
      go 0;
    foldl = b.foldl';

    mapAttrs' = f: set: b.listToAttrs (map (n: f n set.${n}) (b.attrNames set));
    mapAttrsToList = f: set: map (n: f n set.${n}) (b.attrNames set);
    attrsToList = set: map (n: { name = n; value = set.${n}; }) (b.attrNames set);
    nameValuePair = name: value: { inherit name value; };
    genAttrs = names: f: b.listToAttrs (map (n: { name = n; value = f n; }) names);
    filterAttrs =
      pred: set:
      b.listToAttrs (
        b.concatMap (n: if pred n set.${n} then [ { name = n; value = set.${n}; } ] else [ ]) (
          b.attrNames set
        )
      );
    attrByPath =
      path: default: set:
      if path == [ ] then
        set
      else if b.isAttrs set && set ? ${b.head path} then
        attrByPath (b.tail path) default set.${b.head path}
      else
        default;
    hasAttrByPath = path: set: attrByPath path { __fediRunAbsent = true; } set != { __fediRunAbsent = true; };
    getAttrFromPath =
      path: set: attrByPath path (throw "lib.getAttrFromPath: ${b.concatStringsSep "." path} missing") set;
    setAttrByPath =
      path: value: if path == [ ] then value else { ${b.head path} = setAttrByPath (b.tail path) value; };
    recursiveUpdate =
      lhs: rhs:
      lhs
      // b.mapAttrs (
        n: v: if b.isAttrs v && lhs ? ${n} && b.isAttrs lhs.${n} then recursiveUpdate lhs.${n} v else v
      ) rhs;

    hasPrefix = prefix: s: b.substring 0 (b.stringLength prefix) s == prefix;
    hasSuffix =
      suffix: s:
      let
        ls = b.stringLength s;
        lx = b.stringLength suffix;
      in
      lx <= ls && b.substring (ls - lx) lx s == suffix;
    hasInfix = infix: s: b.length (b.split (escapeRegex infix) s) > 1;
    removePrefix =
      prefix: s: if hasPrefix prefix s then b.substring (b.stringLength prefix) (b.stringLength s) s else s;
    removeSuffix =
      suffix: s:
      if hasSuffix suffix s then b.substring 0 (b.stringLength s - b.stringLength suffix) s else s;
    splitString = sep: s: b.filter b.isString (b.split (escapeRegex sep) s);
    toUpper = b.replaceStrings lower upper;
    toLower = b.replaceStrings upper lower;
    fileContents = file: removeSuffix "\n" (b.readFile file);
    escapeShellArg =
      arg:
      let
        s = toString arg;
      in
      if b.match "[[:alnum:],._+:@%/-]+" s != null then s else "'${b.replaceStrings [ "'" ] [ "'\\''" ] s}'";
    escapeShellArgs = xs: b.concatStringsSep " " (map escapeShellArg xs);
    versionAtLeast = v1: v2: b.compareVersions v1 v2 >= 0;
    versionOlder = v1: v2: b.compareVersions v2 v1 == 1;

    getExe = pkg: "${pkg}/bin/${pkg.meta.mainProgram or pkg.pname or pkg.name}";
    getExe' = pkg: name: "${pkg}/bin/${name}";
    getBin = pkg: pkg;
    getLib = pkg: pkg;
    makeBinPath = pkgs: b.concatStringsSep ":" (map (p: "${p}/bin") pkgs);

    strings = {
      inherit
        concatStrings concatMapStrings concatMapStringsSep concatLines concatStringsSep hasPrefix
        hasSuffix hasInfix removePrefix removeSuffix splitString toUpper toLower escapeShellArg
        escapeShellArgs optionalString fileContents
        ;
    };
    lists = {
      inherit optional optionals flatten toList last count unique range foldr foldl elem filter;
    };
    attrsets = {
      inherit
        mapAttrs' mapAttrsToList attrsToList nameValuePair genAttrs filterAttrs attrByPath
        hasAttrByPath getAttrFromPath setAttrByPath recursiveUpdate optionalAttrs
        ;
    };
    trivial = {
      inherit id const flip pipe boolToString warn warnIf throwIf throwIfNot;
      release = "26.05";
    };
    meta = { inherit getExe getExe'; };
  };

  platform = {
    system = "x86_64-linux";
    isLinux = true;
    isx86_64 = true;
    isAarch64 = false;
    isDarwin = false;
  };

  package =
    name:
    let
      self = {
        __fediRunPackage = name;
        type = "derivation";
        inherit name;
        pname = name;
        version = "0";
        outPath = "/nix/store/<pkg:${name}>";
        meta.mainProgram = name;
        passthru = { };
        out = self;
        bin = self;
        lib = self;
        dev = self;
        man = self;
        override = _: self;
        overrideAttrs = _: self;
        withPackages = _: self;
      };
    in
    self;

  format = kind: _settings: {
    type = { _type = "option-type"; name = "${kind} value"; };
    generate = name: _value: package "${kind}:${name}";
  };

  pkgs =
    b.listToAttrs (map (n: { name = n; value = package n; }) packageNames)
    // {
      inherit lib;
      system = "x86_64-linux";
      stdenv = {
        hostPlatform = platform;
        buildPlatform = platform;
      };
      hostPlatform = platform;
      writeText = name: _text: package "writeText:${name}";
      writeTextFile = { name, ... }: package "writeTextFile:${name}";
      writeTextDir = path: _text: package "writeTextDir:${path}";
      writeScript = name: _text: package "writeScript:${name}";
      writeScriptBin = name: _text: package "writeScriptBin:${name}";
      writeShellScript = name: _text: package "writeShellScript:${name}";
      writeShellScriptBin = name: _text: package "writeShellScriptBin:${name}";
      writeShellApplication = { name, ... }: package "writeShellApplication:${name}";
      runCommand = name: _env: _script: package "runCommand:${name}";
      runCommandLocal = name: _env: _script: package "runCommandLocal:${name}";
      symlinkJoin = { name, ... }: package "symlinkJoin:${name}";
      buildEnv = { name, ... }: package "buildEnv:${name}";
      formats = {
        toml = format "toml";
        json = format "json";
        yaml = format "yaml";
        ini = format "ini";
        keyValue = format "keyValue";
      };
    };
in
{
  inherit lib pkgs package;
}
