// ComfyUI-DeepOT: show a node's text result (its `ui.text`) on the node itself.
//
// Make Realistic and Fit Latent Transport send their report, Load Latent Transport the file's channels, patch size,
// samples and space, Save Latent Transport the path it wrote. ComfyUI's frontend draws images
// from `ui` on any node but text only on Preview Any, so this adds a read-only text box the first
// time such a node reports. The box is never saved (`serialize = false`): widget values of saved
// workflows keep their positions, and the API prompt gets no extra input.
import { app } from "../../../scripts/app.js";
import { ComfyWidgets } from "../../../scripts/widgets.js";

const NODES = new Set(["DeepOT_MakeRealistic", "DeepOT_FitLatentTransport", "DeepOT_LoadLatentTransport", "DeepOT_SaveLatentTransport"]);
const WIDGET = "deepot_result";
const MIN_WIDTH = 380; // px: a report line fits
const TEXT_HEIGHT = 90; // px added below the widgets the first time a text arrives

app.registerExtension({
  name: "DeepOT.TextOnNode",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = message?.text;
      if (!text) return;
      let widget = this.widgets?.find((w) => w.name === WIDGET);
      if (!widget) {
        widget = ComfyWidgets.STRING(this, WIDGET, ["STRING", { multiline: true }], app).widget;
        widget.element.readOnly = true;
        widget.serialize = false;
        widget.options ??= {};
        widget.options.serialize = false;
      }
      const fresh = !this.widgets?.some((w) => w.name === WIDGET && w.value);
      widget.value = Array.isArray(text) ? text.join("\n") : String(text);
      const size = this.computeSize();
      // room for a few lines the first time; afterwards keep the size the user gave the node
      const extra = fresh ? TEXT_HEIGHT : 0;
      this.setSize([Math.max(this.size[0], size[0], MIN_WIDTH), Math.max(this.size[1], size[1] + extra)]);
      this.setDirtyCanvas?.(true, true);
    };
  },
});
