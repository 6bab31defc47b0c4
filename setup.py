"""Maps the top-level folders under the `commonpool.` import name.

The repository keeps one folder per job (scheduler/, workers/, api/,
migrations/), but installed they must not be bare generic names such as
`api` in site-packages. setuptools' static configuration cannot map a folder
tree recursively, so this file enumerates the sub-packages.
"""

from setuptools import find_packages, setup

ROOTS = ("scheduler", "workers", "api", "migrations")

packages = ["commonpool"]
package_dir = {"commonpool": "src/commonpool"}
for root in ROOTS:
    package_dir[f"commonpool.{root}"] = root
    packages.append(f"commonpool.{root}")
    packages.extend(f"commonpool.{root}.{sub}" for sub in find_packages(root))

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"": ["*.mako", "*.json", "*.csv", "*.html", "*.js", "*.css", "*.svg", "*.toml"]},
)
