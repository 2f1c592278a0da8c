"""Opening untrusted HDF5: nothing in a file may make convc read another file.

HDF5 can name other files and devices: a dataset's raw data may live in external files
(``H5Pset_external``), a virtual dataset maps other files' datasets, and an external link opens
another file when it is followed. Keras writes none of these. ``open_hdf5`` opens a file, then
walks every object once, before any data is read, and refuses the file at the first such thing,
naming where it is: external storage, a virtual dataset, an external link, a soft link (Keras
writes only hard links), an object reached twice (a hard-link cycle, which would make a walk of
the tree endless), or more objects than a model file holds.
"""

from __future__ import annotations

from typing import Any

from convc.diagnostics import ConvcError
from convc.limits import MAX_HDF5_OBJECTS


def open_hdf5(source: Any, where: str) -> Any:
    """``h5py.File(source, "r")``, vetted (``vet``); a located ``ConvcError`` for a file that
    is not HDF5, is corrupt, or names anything outside itself."""
    import h5py  # heavy; only the commands that read HDF5 pay for it

    try:
        handle = h5py.File(source, "r")
    except (OSError, ValueError) as error:
        raise ConvcError(
            f"cannot read the HDF5 data (truncated or corrupt?): {error}", path=where
        ) from None
    try:
        vet(handle, where)
    except BaseException:
        handle.close()
        raise
    return handle


def vet(handle: Any, where: str) -> None:
    """Refuse ``handle`` if any object in it names another file or device, is reached twice,
    or if it holds more than ``MAX_HDF5_OBJECTS`` objects. Reads links and storage properties
    only, never a dataset's data."""
    import h5py

    seen: set[int] = set()
    groups: list[tuple[str, Any]] = [("/", handle)]
    count = 0
    try:
        while groups:
            path, group = groups.pop()
            for name in group:
                place = f"{path}{name}"
                link = group.get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    raise _refusal(place, f"is a link to another file ({link.filename!r})", where)
                if isinstance(link, h5py.SoftLink):
                    raise _refusal(place, f"is a soft link (to {link.path!r})", where)
                child = group.get(name)
                address = h5py.h5o.get_info(child.id).addr
                if address in seen:
                    raise _refusal(place, "is an object the file reaches twice", where)
                seen.add(address)
                count += 1
                if count > MAX_HDF5_OBJECTS:
                    raise ConvcError(
                        f"the HDF5 data holds more than {MAX_HDF5_OBJECTS:,} objects, more than "
                        "a Keras model file does",
                        path=where,
                    )
                if isinstance(child, h5py.Group):
                    groups.append((place + "/", child))
                elif isinstance(child, h5py.Dataset):
                    _vet_storage(child, place, where)
    except (OSError, KeyError, RuntimeError, ValueError) as error:
        raise ConvcError(
            f"cannot read the HDF5 data (truncated or corrupt?): {error}", path=where
        ) from None


def _vet_storage(dataset: Any, place: str, where: str) -> None:
    """A dataset's data must be stored in this file: not in external files, not virtual."""
    import h5py

    properties = dataset.id.get_create_plist()
    if properties.get_external_count():
        names = [properties.get_external(i)[0] for i in range(properties.get_external_count())]
        raise _refusal(place, f"keeps its data in other files ({_names(names)})", where)
    if properties.get_layout() == h5py.h5d.VIRTUAL:
        raise _refusal(place, "is a virtual dataset (its data is in other datasets)", where)


def _names(names: list[Any]) -> str:
    shown = [
        name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name) for name in names
    ]
    return ", ".join(repr(name) for name in shown)


def _refusal(place: str, what: str, where: str) -> ConvcError:
    return ConvcError(
        f"the HDF5 object {place!r} {what}: convc reads nothing outside the file it is given",
        path=where,
        help="Keras writes every array into the file itself; save the model again with Keras",
    )
