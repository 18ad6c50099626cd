"""Old import path of the atomic bundle update; it lives in `dsedge.bundle.update` now (DESIGN §2).

Kept only because `dsedge.clinical.fit` (being edited elsewhere) imports from
here. New code imports `from dsedge.bundle import bundle_update`.
"""

from dsedge.bundle.update import BundleUpdate, bundle_update

__all__ = ["BundleUpdate", "bundle_update"]
