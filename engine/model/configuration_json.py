"""Reading a Fediversity ``configuration.json`` into the playbook's shape.

Fediversity operators describe a deployment as::

    {"domain": "fediversity.net",
     "mastodon": {"enable": true}, "peertube": {"enable": false}, "pixelfed": {"enable": true},
     "initialUser": {"username": "admin", "displayName": "Admin",
                     "email": "admin@fediversity.net", "passwordFile": "secrets/admin"}}

Each field maps one to one onto the playbook model (``domain`` → ``deployment.domain``,
``<app>.enable`` → ``services.<app>.enable``, ``initialUser`` → ``[initial_user]``). The app
keys are not fixed here: each service plugin declares the key that switches its service
(``ConfigSection.configuration_key``), and the loader passes them to :func:`read`. A password
is only ever read from a file: an inline ``password`` is refused with the way to fix it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedi_run.engine.errors import Problem
from fedi_run.engine.model.validators import did_you_mean, nesting_message, too_deep

CORE_KEYS = ("$schema", "domain", "initialUser")
"""The keys the engine reads itself; every other key is a service's, declared by its plugin."""
USER_KEYS = {
    "username": "username",
    "displayName": "display_name",
    "email": "email",
    "passwordFile": "password_file",
}


def read(
    path: Path, services: Mapping[str, str] = {}
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """``(a partial playbook document, [])`` or ``(None, problems)``. ``services`` maps each
    declared configuration key to the service it switches (``<key>.enable`` →
    ``services.<service>.enable``)."""
    top_keys = (*CORE_KEYS, *sorted(services))
    try:
        data = json.loads(path.read_bytes())
    except OSError as error:
        return None, [Problem(path, "", f"cannot read the file: {error.strerror or error}")]
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, [Problem(path, "", f"not valid JSON: {error}")]
    except RecursionError:
        return None, [Problem(path, "", "not valid JSON: nested too deeply")]
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return None, [Problem(path, "", "expected a JSON object")]
    deep = too_deep(data)
    if deep is not None:
        return None, [Problem(path, deep[0], nesting_message(deep))]
    document: dict[str, Any] = {}
    for key, value in data.items():
        if key not in top_keys:
            problems.append(
                Problem(
                    path,
                    key,
                    f"unknown key{did_you_mean(key, top_keys)}; "
                    f"expected one of: {', '.join(top_keys)}",
                )
            )
        elif key == "domain":
            document["deployment"] = {"domain": value}
        elif key in services:
            if not isinstance(value, dict) or set(value) - {"enable"}:
                problems.append(Problem(path, key, 'expected an object {"enable": true|false}'))
            elif "enable" in value:
                document.setdefault("services", {})[services[key]] = {"enable": value["enable"]}
        elif key == "initialUser":
            document["initial_user"] = _initial_user(path, value, problems)
    return (None, problems) if problems else (document, [])


def _initial_user(path: Path, value: Any, problems: list[Problem]) -> dict[str, Any]:
    if not isinstance(value, dict):
        problems.append(Problem(path, "initialUser", "expected an object"))
        return {}
    user = {}
    for key, item in value.items():
        if key == "password":
            problems.append(
                Problem(
                    path,
                    "initialUser.password",
                    "a password is never read inline; write it to a file readable only by you "
                    "and set initialUser.passwordFile to that file's path",
                )
            )
        elif key not in USER_KEYS:
            problems.append(
                Problem(
                    path,
                    f"initialUser.{key}",
                    f"unknown key{did_you_mean(key, USER_KEYS)}; "
                    f"expected one of: {', '.join(USER_KEYS)}",
                )
            )
        else:
            user[USER_KEYS[key]] = item
    return user
