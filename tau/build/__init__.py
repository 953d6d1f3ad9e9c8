"""
The build machinery monkey runs a job with, as a library: a bubblewrap
sandbox (L{tau.build.sandbox}), Taubyte's repository types
(L{tau.build.repotype}), the C{.taubyte/} build convention
(L{tau.build.taubyte}) with the toolchains it maps Taubyte's images to
(L{tau.build.toolchains}), the check that a built module imports only the
host ABI (L{tau.build.imports}) and a website's output as a UnixFS folder
(L{tau.build.website}).
"""
