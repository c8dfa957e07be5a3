"""The plugin object QGIS creates: dependency check, Processing provider, similarity map tool."""

from __future__ import annotations

import os

from qgis.core import QgsApplication, QgsMessageLog

from . import PLUGIN_DIR, deps_dir, setup_paths
from .compat import MESSAGE_LEVELS


class GeocodecPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.action = None
        self.tool = None
        self.missing = []

    # -- dependencies --------------------------------------------------------------------------
    def check_dependencies(self) -> list[str]:
        from .deps import missing_packages

        setup_paths()
        self.missing = missing_packages()
        return self.missing

    def message(self, text: str, level: str = "info"):
        lv = MESSAGE_LEVELS[level]
        QgsMessageLog.logMessage(text, "geocodec", lv)
        if self.iface is not None and hasattr(self.iface, "messageBar"):
            self.iface.messageBar().pushMessage("geocodec", text, lv, 10)

    def offer_install(self):
        from qgis.PyQt.QtWidgets import QMessageBox

        from .deps import install, pip_command

        cmd = " ".join(pip_command(self.missing))
        text = ("The geocodec plugin needs Python packages that QGIS's Python does not have: "
                f"{', '.join(self.missing)}.\n\nInstall them now into {deps_dir()}?\n\n{cmd}")
        parent = self.iface.mainWindow() if self.iface is not None else None
        if QMessageBox.question(parent, "geocodec: missing packages", text) != QMessageBox.StandardButton.Yes:
            self.message(f"missing packages {', '.join(self.missing)}; install with: {cmd}", "warning")
            return
        ok, out = install(self.missing)
        QgsMessageLog.logMessage(out, "geocodec", MESSAGE_LEVELS["info"])
        if ok:
            self.message("packages installed: restart QGIS to use geocodec", "success")
        else:
            self.message(f"pip failed (see the geocodec log); run by hand: {cmd}", "critical")

    # -- QGIS hooks ----------------------------------------------------------------------------
    def initProcessing(self):  # noqa: N802
        if self.check_dependencies():
            return
        from .provider import GeocodecProvider

        self.provider = GeocodecProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()
        if self.missing:
            self.message(f"missing Python packages: {', '.join(self.missing)}", "warning")
            try:
                self.offer_install()
            except Exception as exc:  # noqa: BLE001
                self.message(f"could not offer the install: {exc}", "critical")
            return
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        self.action = QAction(QIcon(os.path.join(PLUGIN_DIR, "icon.png")), "geocodec: similar tiles (click a tile)",
                              self.iface.mainWindow())
        self.action.setCheckable(True)
        self.action.triggered.connect(self.activate_tool)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToMenu("geocodec", self.action)

    def activate_tool(self):
        from .maptool import SimilarityMapTool

        canvas = self.iface.mapCanvas()
        self.tool = SimilarityMapTool(canvas, on_message=self.message)
        self.tool.setAction(self.action)
        canvas.setMapTool(self.tool)

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.action is not None:
            self.iface.removePluginMenu("geocodec", self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action = None
        if self.tool is not None:
            self.iface.mapCanvas().unsetMapTool(self.tool)
            self.tool = None
