"""The flows room in the admin: staff build flows here without code.

How the pages fit together, and why:

- **Flow** (``editor.py``): the list shows each flow's status, published version and its
  runs by status, counted in the list's one query. The change page edits the flow's
  settings (trigger, the from/to statuses as checkboxes, shop, entry rule, relevance
  window, exit on order) and shows the steps of the draft version beside those of the
  published one, read-only, with what still stops the flow going live. The buttons
  Activate, Pause and Resume call ``flows.actions``; a refusal shows each problem
  ``check_flow`` found. The list offers "Start from a recipe" (``flows.recipes``).
- **FlowVersion** (``editor.py``), the step editor. Steps belong to a version, not to a
  flow: a run is pinned to the version it started on, so published steps never change.
  A Django inline can only edit rows that point at the page's own object, so the
  polymorphic inline lives on the version's page: ``StepInline`` is a
  ``StackedPolymorphicInline`` with one child inline per ``Step`` subclass, each with its
  own fields, help text and friendly fields for the JSON settings (``fields.py``,
  ``forms.py``). "Edit steps" on the flow opens the draft, first making one with
  ``draft_version`` (a copy of the published steps) when none is open. The draft's page
  offers "Publish", with the choice to move waiting runs to it; a published version's
  page is read-only.
- **FlowRun** and **SkippedEntry** (``runs.py``): read-only evidence. A run's page shows
  its journey (the step log, with marketing's send record beside each send) and its
  trigger event; failed runs can be retried.

Every write goes through ``flows.actions`` or ``flows.engine``; buttons are POST-only,
CSRF-protected by the admin site, and need ``flows.change_flow`` (starting from a recipe
needs ``flows.add_flow``). The richer console (diagram, dry runs, dashboards) can grow
from these pages: each keeps its context in one method (``_flow_context`` and the
templates under ``admin/flows/``).
"""

from __future__ import annotations

from flows.admin import editor, runs

__all__ = ["editor", "runs"]
