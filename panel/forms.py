"""The deployment form, built from the playbook's schema and the installed plugins.

Fields: the deployment's name and domain, the inventory its hosts come from, a switch per
service (:func:`fedi_run.panel.catalog.catalog`), the ACME contact and terms (when the acme
plugin is installed), the initial user, and whether the run ends with ``nixops4 apply``. The
initial user's password is typed once and never rendered back; :meth:`DeploymentForm.save`
writes it to its 0600 file and nowhere else.

Validation is the engine's: :meth:`DeploymentForm.clean` writes the playbook the deployment
would have and loads it with the inventory (:func:`fedi_run.panel.playbooks.check`); each
problem appears beside its field.
"""

from __future__ import annotations

from pathlib import Path

from django import forms

from fedi_run.panel import runs, site
from fedi_run.panel.catalog import catalog
from fedi_run.panel.models import Deployment
from fedi_run.panel.playbooks import NON_FIELD, check

MIN_PASSWORD = 8


class DeploymentForm(forms.ModelForm):
    """Create (``instance`` None) or edit one of ``owner``'s deployments."""

    services = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Services"
    )
    password = forms.CharField(
        label="Initial user's password",
        strip=False,
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Typed once, kept only in a file readable by the panel alone (mode 0600), "
        "never shown again.",
    )

    class Meta:
        model = Deployment
        fields = [
            "name",
            "domain",
            "inventory",
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
            "inventory": "Inventory file",
            "acme_email": "ACME contact e-mail",
            "acme_accept_terms": "Accept the ACME server's terms",
            "initial_username": "Initial user: name",
            "initial_display_name": "Initial user: display name",
            "initial_email": "Initial user: e-mail",
            "apply": "End with nixops4 apply",
        }

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner
        known = catalog()
        self.fields["services"].choices = [
            (
                s.name,
                f"{s.name} — {s.label}"
                + (f" (switched on by {', '.join(s.needed_by)})" if s.needed_by else ""),
            )
            for s in known.services
        ]
        if self.instance.pk:
            self.initial.setdefault("services", list(self.instance.services))
            self.fields["password"].help_text = (
                "Leave empty to keep the password already set. " + self.fields["password"].help_text
            )
        else:
            self.fields["password"].required = True
        schema_help = {
            "name": known.help.get("deployment.name", ""),
            "domain": known.help.get("deployment.domain", ""),
            "acme_email": known.help.get("acme.email", ""),
            "acme_accept_terms": known.help.get("acme.accept_terms", ""),
        }
        for name, text in schema_help.items():
            if text and name in self.fields:
                self.fields[name].help_text = text
        self.fields["inventory"].help_text = (
            "A TOML file on this machine with the [hosts.*] tables (and [acme]) — the file "
            "`fedi-run -i` reads, such as `fedi-run lab inventory` writes. A service runs on "
            "the host of its own name."
        )
        self.fields["apply"].help_text = (
            "Off: prepare the hosts and render the NixOps4 "
            "deployment, without running nixops4 (--no-apply)."
        )
        if not known.acme:
            del self.fields["acme_email"], self.fields["acme_accept_terms"]
        for field in self.fields.values():
            if not isinstance(field.widget, (forms.CheckboxInput, forms.CheckboxSelectMultiple)):
                field.widget.attrs.setdefault("class", "text")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        taken = Deployment.objects.filter(owner=self.owner, name=name)
        if self.instance.pk:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(f"you already have a deployment called {name!r}")
        return name

    def clean_inventory(self) -> str:
        value = self.cleaned_data["inventory"].strip()
        path = Path(value).expanduser()
        if not path.is_absolute():
            raise forms.ValidationError(
                "expected an absolute path, such as /root/.fedi-lab/inventory.toml"
            )
        if not path.is_file():
            raise forms.ValidationError(
                f"found {value!r}, which is not a file; expected an inventory file on this machine"
            )
        return str(path)

    def clean_password(self) -> str:
        password = self.cleaned_data.get("password", "")
        if password and len(password) < MIN_PASSWORD:
            raise forms.ValidationError(f"expected at least {MIN_PASSWORD} characters")
        if "\n" in password or "\r" in password:
            raise forms.ValidationError("expected a password on one line")
        return password

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned  # the engine's check needs every field; fix these first
        candidate = Deployment(
            owner=self.owner,
            name=cleaned["name"],
            domain=cleaned["domain"],
            inventory=cleaned["inventory"],
            services=list(cleaned.get("services") or ()),
            acme_email=cleaned.get("acme_email", ""),
            acme_accept_terms=cleaned.get("acme_accept_terms", False),
            initial_username=cleaned["initial_username"],
            initial_display_name=cleaned["initial_display_name"],
            initial_email=cleaned["initial_email"],
        )
        workdir = site.current().data_dir
        spec = runs.spec_of(candidate, password=workdir / "initial-user-password")
        for problem in check(spec, Path(cleaned["inventory"]), workdir):
            field = problem.field if problem.field in self.fields else NON_FIELD
            self.add_error(None if field == NON_FIELD else field, problem.message)
        return cleaned

    def save(self, commit: bool = True) -> Deployment:
        deployment = super().save(commit=False)
        deployment.owner = self.owner
        deployment.services = list(self.cleaned_data.get("services") or ())
        deployment.save()
        if self.cleaned_data.get("password"):
            runs.write_password(deployment, self.cleaned_data["password"])
        runs.write_playbook(deployment)
        return deployment
