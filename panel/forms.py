"""The panel's forms: a deployment (by an operator), an environment and its hosts (by staff).

:class:`DeploymentForm` — the deployment's name and domain, the environment it goes into
(among those its operator may deploy to), a switch per service
(:func:`fedi_run.panel.catalog.catalog`; a service another one needs is shown on, and fixed,
while that one is), the ACME contact and terms (when the acme plugin is installed), the
initial user, and whether the run ends with ``nixops4 apply``. Every problem is reported in one
round: the form's own checks and the engine's (:meth:`DeploymentForm.clean` writes the playbook
the deployment would have and loads it with its environment's inventory,
:func:`fedi_run.panel.playbooks.check`), each beside its field. The initial user's password is
never rendered back: typed once, it is kept across a round of errors sealed in the operator's
session under a random token the form carries (:class:`PendingPasswords`), and
:meth:`DeploymentForm.save` stores it sealed with the deployment
(:mod:`fedi_run.panel.initial_password`). The name is fixed once the
deployment was deployed (it names the NixOps4 deployment and the engine's state).

:class:`EnvironmentForm` and :data:`HostFormSet` — an environment's name, users, other
inventory tables and hosts; :class:`ImportForm` — an inventory file's hosts to add.
"""

from __future__ import annotations

import re
import secrets
import time

from django import forms
from django.contrib.auth import get_user_model

from fedi_run.engine.errors import SecretUnreadable
from fedi_run.panel import deployment_files, sealing, site
from fedi_run.panel.catalog import catalog
from fedi_run.panel.environments import (
    HOST_FIELDS,
    HostRow,
    materialize,
    needed,
    placement,
    rows_of,
)
from fedi_run.panel.models import Deployment, Environment, EnvironmentHost
from fedi_run.panel.playbooks import NON_FIELD, check

MIN_PASSWORD = 8
PENDING_MAX_AGE = 3600.0
"""Seconds a password typed in a form with errors is kept for the next round."""


class PendingPasswords:
    """Passwords typed in a form that had errors, kept for the next round: sealed
    (:mod:`fedi_run.panel.sealing`) in the operator's session — which is in the database, so
    any web process serves the next round — under a random token the form carries, so only
    that session can claim it. Those older than an hour are dropped."""

    TOKEN = re.compile(r"[0-9a-f]{32}")
    KEY = "pending_passwords"

    def __init__(self, session):
        self.session = session

    def keep(self, password: str) -> str:
        token = secrets.token_hex(16)
        kept = self._fresh()
        kept[token] = [time.time(), sealing.seal(password)]
        self.session[self.KEY] = kept
        return token

    def get(self, token: str) -> str:
        """The password kept under ``token`` for this session; "" when there is none."""
        found = self._fresh().get(token) if self.TOKEN.fullmatch(token or "") else None
        if found is None:
            return ""
        try:
            return sealing.unseal(found[1], "a password typed in the form")
        except SecretUnreadable:
            return ""

    def drop(self, token: str) -> None:
        kept = self._fresh()
        if kept.pop(token or "", None) is not None or self.KEY in self.session:
            self.session[self.KEY] = kept

    def _fresh(self) -> dict:
        kept = self.session.get(self.KEY)
        if not isinstance(kept, dict):
            return {}
        now = time.time()
        return {t: v for t, v in kept.items() if now - float(v[0]) <= PENDING_MAX_AGE}


def environments_for(user):
    """The environments ``user`` may deploy to (staff: every one)."""
    if user.is_staff:
        return Environment.objects.all()
    return Environment.objects.filter(users=user)


class DeploymentForm(forms.ModelForm):
    """Create (``instance`` None) or edit one of ``owner``'s deployments; ``session``: where
    a password typed in a round with errors is claimed from (:class:`PendingPasswords`)."""

    services = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Services"
    )
    password = forms.CharField(
        label="Initial user's password",
        strip=False,
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Typed once, kept only sealed (encrypted with the panel's secret key), "
        "never shown again.",
    )
    password_token = forms.CharField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = Deployment
        fields = [
            "name",
            "domain",
            "environment",
            "services",
            "acme_email",
            "acme_accept_terms",
            "initial_username",
            "initial_display_name",
            "initial_email",
            "apply",
        ]
        labels = {
            "name": "Name",
            "domain": "Domain",
            "environment": "Environment",
            "acme_email": "ACME contact e-mail",
            "acme_accept_terms": "Accept the ACME server's terms",
            "initial_username": "Initial user: name",
            "initial_display_name": "Initial user: display name",
            "initial_email": "Initial user: e-mail",
            "apply": "End with nixops4 apply",
        }

    def __init__(self, *args, owner, session=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner
        self.pending = PendingPasswords(session) if session is not None else None
        self.kept_password = ""
        known = catalog()
        self.known = known
        self.fields["services"].choices = [(s.name, s.label) for s in known.services]
        environment = self.fields["environment"]
        environment.queryset = environments_for(owner)
        environment.required = True
        environment.empty_label = "— choose one —"
        environment.help_text = (
            "The hosts your provider's staff set up for you. Each service runs on the "
            "environment's host that may carry it; no other host is touched."
        )
        if self.instance.pk:
            self.initial.setdefault("services", list(self.instance.services))
            self.fields["password"].help_text = (
                "Leave empty to keep the password already set. " + self.fields["password"].help_text
            )
            if self.instance.name_fixed:
                self.fields["name"].disabled = True
                self.fields["name"].help_text = (
                    "Fixed since the first deploy: it names the NixOps4 deployment and the "
                    "engine's record of what is on the hosts."
                )
        token = self.data.get(self.add_prefix("password_token"), "") if self.is_bound else ""
        if self.pending is not None and token:
            self.kept_password = self.pending.get(token)
        if self.kept_password:
            self.fields["password"].help_text = (
                "The password you typed is kept (not shown); leave empty to keep it, or type "
                "another. " + self.fields["password"].help_text
            )
        elif not self.instance.pk:
            self.fields["password"].required = True
        schema_help = {
            "name": known.help.get("deployment.name", ""),
            "domain": known.help.get("deployment.domain", ""),
            "acme_email": known.help.get("acme.email", ""),
            "acme_accept_terms": known.help.get("acme.accept_terms", ""),
        }
        for name, text in schema_help.items():
            if text and name in self.fields and not self.fields[name].disabled:
                self.fields[name].help_text = text
        self.fields["apply"].help_text = (
            "On: the run ends with `nixops4 apply`, which builds each host's NixOS "
            "configuration and switches the hosts to it — the services start. Off: prepare "
            "only — secrets, files and the rendered NixOps4 deployment are put in place, and "
            "no host's system is changed (--no-apply)."
        )
        if not known.acme:
            del self.fields["acme_email"], self.fields["acme_accept_terms"]
        for field in self.fields.values():
            if not isinstance(
                field.widget,
                (forms.CheckboxInput, forms.CheckboxSelectMultiple, forms.HiddenInput),
            ):
                field.widget.attrs.setdefault("class", "text")

    # --- the services' switches ---------------------------------------------------------

    def chosen_services(self) -> list[str]:
        """The services ticked: the posted ones, else the deployment's."""
        value = self["services"].value() or []
        return [v for v in value if v in self.known.service_names()]

    def switches(self) -> list[dict]:
        """Each service's switch: name, label, on, and ``forced_by`` — the ticked services
        that need it (then it is on whatever is ticked: shown checked and disabled)."""
        chosen = self.chosen_services()
        rows = []
        for service in self.known.services:
            forced = [s for s in chosen if s in service.needed_by]
            rows.append(
                {
                    "name": service.name,
                    "label": service.label,
                    "on": service.name in chosen or bool(forced),
                    "forced_by": forced,
                    "needed_by": list(service.needed_by),
                }
            )
        return rows

    # --- checks -------------------------------------------------------------------------

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        taken = Deployment.objects.filter(owner=self.owner, name=name)
        if self.instance.pk:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(f"you already have a deployment called {name!r}")
        return name

    def clean_password(self) -> str:
        password = self.cleaned_data.get("password", "")
        if password and len(password) < MIN_PASSWORD:
            raise forms.ValidationError(f"expected at least {MIN_PASSWORD} characters")
        if "\n" in password or "\r" in password:
            raise forms.ValidationError("expected a password on one line")
        return password or self.kept_password

    def clean(self):
        """The engine's check too, whatever the form's own checks found: every problem in
        one round (an engine problem on a field that already has one is left out)."""
        cleaned = super().clean()
        value = self._value
        environment = cleaned.get("environment")
        services = list(cleaned.get("services") or ())
        needs = {s.name: s.needs for s in self.known.services}
        placed: dict[str, str] = {}
        if environment is not None:
            rows = rows_of(environment)
            wanted = needed(services, needs)
            placed = placement(rows, wanted)
            missing = [s for s in wanted if s not in placed]
            for service in missing:
                self._add("services", self._no_host(environment, service, services, needs))
            if missing:
                environment = None  # the engine would only say it once more
        if environment is None:
            return cleaned
        candidate = Deployment(
            owner=self.owner,
            name=value("name"),
            domain=value("domain"),
            environment=environment,
            services=services,
            acme_email=value("acme_email"),
            acme_accept_terms=bool(cleaned.get("acme_accept_terms", False)),
            initial_username=value("initial_username"),
            initial_display_name=value("initial_display_name"),
            initial_email=value("initial_email"),
        )
        workdir = site.current().data_dir
        spec = deployment_files.spec_of(candidate, password=workdir / "initial-user-password")
        inventory = materialize(workdir, environment)
        for problem in check(spec, inventory, workdir):
            field = "environment" if problem.field == "inventory" else problem.field
            self._add(field, problem.message)
        return cleaned

    def _value(self, name: str) -> str:
        """A text field's cleaned value, else what was typed (for the engine's check)."""
        if name in self.cleaned_data:
            return str(self.cleaned_data[name] or "")
        if name not in self.fields:
            return ""
        return str(self[name].value() or "").strip()

    def _add(self, field: str, message: str) -> None:
        """``message`` beside ``field`` — unless the form's own check already put one there
        (the engine would say the same of a missing or malformed value); the services'
        problems are all kept."""
        if field == NON_FIELD or field not in self.fields:
            self.add_error(None, message)
        elif field not in self.errors or field == "services":
            self.add_error(field, message)

    @staticmethod
    def _no_host(environment, service, chosen, needs) -> str:
        why = [s for s in chosen if service in needs.get(s, ()) and s != service]
        because = f" ({', '.join(why)} needs it)" if why else ""
        return (
            f"the environment {environment.name!r} has no host that may carry {service}"
            f"{because}; choose another environment, or ask its staff to let one of its hosts "
            "carry it"
        )

    def keep_password(self) -> None:
        """After a round with errors: keep the password typed (or kept) for the next one."""
        if self.pending is None:
            return
        typed = self.data.get(self.add_prefix("password"), "")
        password = typed if typed and "password" not in self.errors else self.kept_password
        old = self.data.get(self.add_prefix("password_token"), "")
        if password:
            if old:
                self.pending.drop(old)
            token = self.pending.keep(password)
            self.kept_password = password
            data = self.data.copy()
            data[self.add_prefix("password_token")] = token
            data[self.add_prefix("password")] = ""
            self.data = data
            self.fields["password"].required = False

    def save(self, commit: bool = True) -> Deployment:
        deployment = super().save(commit=False)
        deployment.owner = self.owner
        deployment.services = list(self.cleaned_data.get("services") or ())
        deployment.inventory = ""  # its environment's rows are its inventory
        if self.cleaned_data.get("password"):
            deployment.initial_password_sealed = sealing.seal(self.cleaned_data["password"])
        deployment.save()
        if self.pending is not None:
            self.pending.drop(self.data.get(self.add_prefix("password_token"), ""))
        return deployment


# --- environments (staff) ----------------------------------------------------------------


class EnvironmentForm(forms.ModelForm):
    """An environment's name, description, the users who may deploy to it, and the
    inventory's other tables (``[acme]``…)."""

    class Meta:
        model = Environment
        fields = ["name", "description", "users", "extra"]
        labels = {
            "name": "Name",
            "description": "Description",
            "users": "Who may deploy here",
            "extra": "Other inventory tables",
        }
        help_texts = {
            "name": "Shown to operators when they choose where a deployment goes.",
            "users": "Operators who may create deployments in this environment (staff may always).",
            "extra": "TOML, appended to the hosts' tables — such as the [acme] table "
            "`fedi-run lab inventory` writes (server, ca_file).",
        }
        widgets = {
            "users": forms.CheckboxSelectMultiple,
            "extra": forms.Textarea(attrs={"rows": 4, "class": "text mono"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["users"].queryset = get_user_model().objects.order_by("username")
        for name in ("name", "description"):
            self.fields[name].widget.attrs.setdefault("class", "text")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ._-]*", name):
            raise forms.ValidationError(
                f"found {name!r}; expected letters, digits, spaces, '.', '_' or '-'"
            )
        return name


class HostForm(forms.ModelForm):
    """One host of an environment: ``[hosts.<name>]``'s keys and the services it may carry."""

    services = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="May carry"
    )

    class Meta:
        model = EnvironmentHost
        fields = ["name", "address", "port", "user", "host_key", "identity", "nixos", "services"]
        labels = {
            "name": "Host",
            "address": "Address",
            "port": "SSH port",
            "user": "SSH user",
            "host_key": "Pinned host key",
            "identity": "Identity file (on the deployer)",
            "nixos": "NixOS base configuration (path)",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["services"].choices = [(s, s) for s in catalog().service_names()]
        if self.instance.pk:
            self.initial.setdefault("services", list(self.instance.services))
        for name in HOST_FIELDS + ("name",):
            self.fields[name].widget.attrs.setdefault("class", "text")
        self.fields["host_key"].widget.attrs["placeholder"] = "ssh-ed25519 AAAA…"

    def row(self) -> HostRow:
        data = self.cleaned_data
        return HostRow(
            data["name"],
            data["address"],
            int(data.get("port") or 22),
            data.get("user") or "root",
            data.get("host_key") or "",
            data.get("identity") or "",
            data.get("nixos") or "",
            tuple(data.get("services") or ()),
        )


HostFormSet = forms.inlineformset_factory(
    Environment, EnvironmentHost, form=HostForm, extra=1, can_delete=True
)


class ImportForm(forms.Form):
    """An inventory file's hosts to add to an environment: uploaded, or pasted."""

    file = forms.FileField(
        required=False,
        label="Import hosts from an inventory file",
        help_text="Such as `fedi-run lab inventory` writes: its hosts (keys pinned) are added "
        "— a host of the same name replaced — and its other tables become the environment's. "
        "A host named as a service may carry it.",
    )
    text = forms.CharField(
        required=False,
        label="…or paste it",
        widget=forms.Textarea(attrs={"rows": 3, "class": "text mono"}),
    )

    def inventory_text(self) -> str:
        """The uploaded file's text, else the pasted one ("" when neither)."""
        upload = self.cleaned_data.get("file")
        if upload:
            try:
                return upload.read().decode("utf-8")
            except UnicodeDecodeError:
                self.add_error("file", "expected a UTF-8 text file (an inventory's TOML)")
                return ""
        return self.cleaned_data.get("text", "")
