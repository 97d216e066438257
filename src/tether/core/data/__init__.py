"""Data resources: folders, blobs and tables on this machine, a cluster or an object store.

``tether.folder`` / ``tether.blob`` / ``tether.table`` (Runhouse's ``rh.folder``, ``rh.blob``,
``rh.table``). fsspec, s3fs, gcsfs and pyarrow are imported only when a method needs them.
"""
