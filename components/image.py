"""The one image every step runs in (built from the repository's Dockerfile).

Steps are lightweight components: KFP embeds each function's source in the compiled
pipeline and runs it in this image, which carries ``prednas`` and its dependencies, so no
package is installed at run time (``install_kfp_package=False``, no ``packages_to_install``).
Change the tag here when releasing a new image; the compiled YAML test shows the change.
"""

IMAGE = "ghcr.io/prednas/prednas:0.1.0"
