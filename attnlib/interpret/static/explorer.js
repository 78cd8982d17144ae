/* attnlib's interactive attention explorer (see attnlib/interpret/explorer.py).
 *
 * Plain JavaScript with no dependency and no network access. Python inlines this file and
 * explorer.css into every explorer's HTML, followed by the explorer's data (a JSON script
 * element) and a call to window.attnlibExplorer.mount(id). The code defines itself once
 * per page, however many explorers the page holds; each explorer is one instance,
 * window.attnlibExplorer.instances[id], whose `state` is what the tests read back.
 *
 * Every token and label reaches the page through textContent (HTML), fillText (PNG) or
 * an XML serializer (SVG): never as markup.
 */
window.attnlibExplorer =
  window.attnlibExplorer ||
  (() => {
    // Python inlines this file in a script element: a classic script, not a module (which
    // would be strict anyway, hence the linter's rule)
    // biome-ignore lint/suspicious/noRedundantUseStrict: not redundant in a classic script
    "use strict";

    const VERSION = "2";
    const instances = {};
    const MASK_FILL = "#d9d9d9";
    const MASK_HATCH = "#8c8c8c";
    const EXPORT_FONT = "12px sans-serif";
    const DEBOUNCE_MS = 150;

    // -- small helpers ----------------------------------------------------------------

    function el(tag, className, text) {
      const node = document.createElement(tag);
      if (className) node.className = className;
      if (text !== undefined && text !== null) node.textContent = String(text);
      return node;
    }

    function button(label, className, onClick) {
      const node = el("button", className, label);
      node.type = "button";
      node.addEventListener("click", onClick);
      return node;
    }

    function bytesFromBase64(text) {
      const bin = atob(text);
      const out = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out;
    }

    // little-endian float32, as numpy's "<f4" writes them
    function float32FromBase64(text) {
      const bytes = bytesFromBase64(text);
      const view = new DataView(bytes.buffer);
      const out = new Float32Array(bytes.length / 4);
      for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    }

    // uint8 or little-endian uint16 codes q -> lo + q * (hi - lo) / (2^bits - 1)
    function dequantize(text, bits, lo, hi) {
      const bytes = bytesFromBase64(text);
      const wide = bits === 16;
      const n = wide ? bytes.length / 2 : bytes.length;
      const step = (hi - lo) / (wide ? 65535 : 255);
      const view = new DataView(bytes.buffer);
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++)
        out[i] = lo + (wide ? view.getUint16(2 * i, true) : bytes[i]) * step;
      return out;
    }

    // numpy.packbits order: the first value in the most significant bit
    function unpackBits(text, n) {
      const bytes = bytesFromBase64(text);
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = (bytes[i >> 3] >> (7 - (i & 7))) & 1;
      return out;
    }

    function parseLut(hex) {
      const lut = [];
      for (let i = 0; i + 6 <= hex.length; i += 6) {
        lut.push([0, 2, 4].map((k) => parseInt(hex.slice(i + k, i + k + 2), 16)));
      }
      return lut;
    }

    function rgb(c) {
      return `rgb(${c[0]},${c[1]},${c[2]})`;
    }

    function download(blob, name) {
      const url = URL.createObjectURL(blob);
      const link = el("a");
      link.href = url;
      link.download = name;
      link.style.display = "none";
      document.body.appendChild(link);
      link.click();
      setTimeout(() => {
        URL.revokeObjectURL(url);
        link.remove();
      }, 5000);
    }

    // the SVG namespace, from the HTML parser (no URL string in this file)
    let svgNS = null;
    function svgNamespace() {
      if (!svgNS) {
        const box = document.createElement("div");
        box.innerHTML = "<svg></svg>";
        svgNS = box.firstChild.namespaceURI;
      }
      return svgNS;
    }

    function svgEl(tag, attrs, text) {
      const node = document.createElementNS(svgNamespace(), tag);
      for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
      if (text !== undefined) node.textContent = String(text);
      return node;
    }

    // -- the tokenizer: attnlib.data.text.WordTokenizer ------------------------------
    // Python's \w is exactly [\p{L}\p{N}_] and its \s (and str.split) these characters.

    const TYPOGRAPHIC = /[\u2018\u2019\u201c\u201d\u2013\u2014]/g;
    const TYPOGRAPHIC_MAP = {
      "\u2018": "'",
      "\u2019": "'",
      "\u201c": '"',
      "\u201d": '"',
      "\u2013": "-",
      "\u2014": "-",
    };
    // Python's whitespace includes the control characters \x1c-\x1f
    // biome-ignore-start lint/suspicious/noControlCharactersInRegex: they are whitespace
    const SPACES =
      /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;
    const PUNCT =
      /[^\p{L}\p{N}_\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000']|(?<![\p{L}\p{N}_])'|'(?![\p{L}\p{N}_])/gu;
    const WORD =
      /[\p{L}\p{N}_]+(?:'[\p{L}\p{N}_]+)*|[^\p{L}\p{N}_\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/gu;
    // biome-ignore-end lint/suspicious/noControlCharactersInRegex: they are whitespace

    function cleanText(text, options) {
      let t = String(text)
        .normalize("NFKC")
        .replace(TYPOGRAPHIC, (c) => TYPOGRAPHIC_MAP[c]);
      if (options.lowercase) t = t.toLowerCase();
      if (options.remove_punctuation) t = t.replace(PUNCT, " ");
      return t
        .split(SPACES)
        .filter((s) => s.length > 0)
        .join(" ");
    }

    function tokenize(text, options) {
      return cleanText(text, options).match(WORD) || [];
    }

    // -- the classifier: attnlib.transformer.EncoderClassifier --------------------------

    // erfc with a fractional error below 1.2e-7 (Numerical Recipes' erfcc)
    function erf(x) {
      const z = Math.abs(x);
      const t = 1 / (1 + 0.5 * z);
      const r =
        t *
        Math.exp(
          -z * z -
            1.26551223 +
            t *
              (1.00002368 +
                t *
                  (0.37409196 +
                    t *
                      (0.09678418 +
                        t *
                          (-0.18628806 +
                            t *
                              (0.27886807 +
                                t *
                                  (-1.13520398 +
                                    t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
        );
      return x >= 0 ? 1 - r : r - 1;
    }

    const ACTIVATIONS = {
      relu: (x) => Math.max(x, 0),
      gelu: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
    };

    // y (n, out) = x (n, in) W^T + b, W as torch stores it: (out, in)
    function linear(x, n, dIn, weight, bias, dOut) {
      const y = new Float64Array(n * dOut);
      for (let i = 0; i < n; i++) {
        for (let o = 0; o < dOut; o++) {
          let s = bias ? bias[o] : 0;
          const row = o * dIn;
          const xi = i * dIn;
          for (let k = 0; k < dIn; k++) s += x[xi + k] * weight[row + k];
          y[i * dOut + o] = s;
        }
      }
      return y;
    }

    function layerNorm(x, n, d, gamma, beta, eps) {
      const y = new Float64Array(n * d);
      for (let i = 0; i < n; i++) {
        let mean = 0;
        for (let k = 0; k < d; k++) mean += x[i * d + k];
        mean /= d;
        let variance = 0;
        for (let k = 0; k < d; k++) variance += (x[i * d + k] - mean) ** 2;
        const inv = 1 / Math.sqrt(variance / d + eps);
        for (let k = 0; k < d; k++)
          y[i * d + k] = (x[i * d + k] - mean) * inv * gamma[k] + beta[k];
      }
      return y;
    }

    function add(a, b) {
      const y = new Float64Array(a.length);
      for (let i = 0; i < a.length; i++) y[i] = a[i] + b[i];
      return y;
    }

    function softmax(values) {
      const max = Math.max(...values);
      const e = values.map((v) => Math.exp(v - max));
      const sum = e.reduce((a, b) => a + b, 0);
      return e.map((v) => v / sum);
    }

    // the model data this code reads: attnlib.interpret.explorer.CLASSIFIER_FORMAT
    const MODEL_FORMAT = "attnlib-classifier/2";

    // the tensors that `roles` (role -> tensor key, or null) names, decoded, by role
    function tensorsByRole(roles, tensors, where) {
      const out = {};
      for (const [role, key] of Object.entries(roles)) {
        if (key === null) {
          out[role] = null;
          continue;
        }
        if (!Object.hasOwn(tensors, key)) {
          throw new Error(
            `model data: params${where}.${role} names ${key}, not among its tensors`,
          );
        }
        out[role] = float32FromBase64(tensors[key][1]);
      }
      return out;
    }

    function Classifier(spec) {
      const format = spec ? spec.format : spec;
      if (format !== MODEL_FORMAT) {
        throw new Error(
          `expected model data of format ${MODEL_FORMAT}, got ${JSON.stringify(format)}: ` +
            "export the model again with the attnlib version of this page",
        );
      }
      this.config = spec.config;
      this.classes = spec.classes;
      this.tokenizer = spec.tokenizer;
      this.act = ACTIVATIONS[spec.config.activation];
      if (!this.act) throw new Error(`unknown activation ${spec.config.activation}`);
      this.vocab = new Map(spec.tokenizer.tokens.map((token, i) => [token, i]));
      // every tensor is found through the parameter map, by role: no key is known here
      const { layers, ...model } = spec.params;
      if (layers.length !== spec.config.num_layers) {
        throw new Error(
          `model data: ${layers.length} layers in params, not ${spec.config.num_layers}`,
        );
      }
      this.weights = tensorsByRole(model, spec.tensors, "");
      this.layers = layers.map((roles, l) => tensorsByRole(roles, spec.tensors, `.layers[${l}]`));
      this.positions = [];
    }

    // row `pos` of attnlib.positional.sinusoidal_encoding: float64, then float32
    Classifier.prototype.position = function (pos) {
      while (this.positions.length <= pos) {
        const p = this.positions.length;
        const d = this.config.d_model;
        const row = new Float64Array(d);
        for (let i = 0; i < d; i += 2) {
          const freq = Math.exp((-Math.log(this.config.base) * i) / d);
          row[i] = Math.fround(Math.sin(p * freq));
          row[i + 1] = Math.fround(Math.cos(p * freq));
        }
        this.positions.push(row);
      }
      return this.positions[pos];
    };

    // text -> tokens and ids, cut to the model's positions like attnlib.inference.predict
    Classifier.prototype.encode = function (text) {
      const all = tokenize(text, this.tokenizer);
      const unk = this.tokenizer.unk_idx;
      const ids = all.map((t) => (this.vocab.has(t) ? this.vocab.get(t) : unk));
      const max = this.config.max_len;
      return {
        tokens: all.slice(0, max),
        ids: ids.slice(0, max),
        unknown: all.filter((_, i) => ids[i] === unk),
        truncated: all.length > max,
        count: all.length,
      };
    };

    // self-attention of one layer, `w` its tensors by role
    Classifier.prototype.attend = function (x, n, keep, w) {
      const c = this.config;
      const d = c.d_model;
      const heads = c.nhead;
      const dh = d / heads;
      const q = linear(x, n, d, w.q_weight, w.q_bias, d);
      const k = linear(x, n, d, w.k_weight, w.k_bias, d);
      const v = linear(x, n, d, w.v_weight, w.v_bias, d);
      const scale = 1 / Math.sqrt(dh);
      const merged = new Float64Array(n * d);
      const weights = [];
      const row = new Float64Array(n);
      for (let h = 0; h < heads; h++) {
        const a = new Float64Array(n * n);
        const off = h * dh;
        for (let i = 0; i < n; i++) {
          let max = -Infinity;
          for (let j = 0; j < n; j++) {
            if (!keep[j]) continue;
            let s = 0;
            for (let e = 0; e < dh; e++) s += q[i * d + off + e] * k[j * d + off + e];
            row[j] = s * scale;
            if (row[j] > max) max = row[j];
          }
          let sum = 0;
          for (let j = 0; j < n; j++) {
            if (!keep[j]) continue;
            row[j] = Math.exp(row[j] - max);
            sum += row[j];
          }
          for (let j = 0; j < n; j++) a[i * n + j] = keep[j] && sum > 0 ? row[j] / sum : 0;
          for (let e = 0; e < dh; e++) {
            let s = 0;
            for (let j = 0; j < n; j++) s += a[i * n + j] * v[j * d + off + e];
            merged[i * d + off + e] = s;
          }
        }
        weights.push(a);
      }
      return { out: linear(merged, n, d, w.out_weight, w.out_bias, d), weights };
    };

    // the feed-forward block of one layer, `w` its tensors by role
    Classifier.prototype.feedForward = function (x, n, w) {
      const d = this.config.d_model;
      const dff = this.config.dim_feedforward;
      const hidden = linear(x, n, d, w.ff1_weight, w.ff1_bias, dff);
      for (let i = 0; i < hidden.length; i++) hidden[i] = this.act(hidden[i]);
      return linear(hidden, n, dff, w.ff2_weight, w.ff2_bias, d);
    };

    Classifier.prototype.norm = function (x, n, weight, bias, eps) {
      return layerNorm(x, n, this.config.d_model, weight, bias, eps);
    };

    // the forward pass in eval mode: every attention map, the logits and the probabilities
    Classifier.prototype.forward = function (ids) {
      const c = this.config;
      const d = c.d_model;
      const n = ids.length;
      const top = this.weights;
      const emb = top.embedding_weight;
      let x = new Float64Array(n * d);
      for (let i = 0; i < n; i++) {
        const pe = this.position(i);
        for (let k = 0; k < d; k++)
          x[i * d + k] = Math.fround(emb[ids[i] * d + k] * c.scale) + pe[k];
      }
      const keep = ids.map((id) => id !== c.pad_idx);
      const attention = [];
      for (let l = 0; l < c.num_layers; l++) {
        const w = this.layers[l];
        const eps = c.norm_eps.layers[l];
        const norm1 = (y) => this.norm(y, n, w.norm1_weight, w.norm1_bias, eps.norm1);
        const norm2 = (y) => this.norm(y, n, w.norm2_weight, w.norm2_bias, eps.norm2);
        if (c.norm_first) {
          const a = this.attend(norm1(x), n, keep, w);
          x = add(x, a.out);
          x = add(x, this.feedForward(norm2(x), n, w));
          attention.push(a.weights);
        } else {
          const a = this.attend(x, n, keep, w);
          x = norm1(add(x, a.out));
          x = norm2(add(x, this.feedForward(x, n, w)));
          attention.push(a.weights);
        }
      }
      if (c.final_norm) {
        x = this.norm(x, n, top.final_norm_weight, top.final_norm_bias, c.norm_eps.final_norm);
      }
      if (n === 0) return { attention, logits: null, probs: null, keep };
      const pooled = new Float64Array(d);
      if (c.pooling === "first") {
        for (let k = 0; k < d; k++) pooled[k] = x[k];
      } else {
        let count = 0;
        for (let i = 0; i < n; i++) {
          if (!keep[i]) continue;
          count += 1;
          for (let k = 0; k < d; k++) pooled[k] += x[i * d + k];
        }
        for (let k = 0; k < d; k++) pooled[k] /= Math.max(count, 1);
      }
      const logits = Array.from(
        linear(pooled, 1, d, top.head_weight, top.head_bias, c.num_classes),
      );
      return { attention, logits, probs: softmax(logits), keep };
    };

    // -- the view: selectors, thumbnails, the big heatmap, the panel, the exports ----------

    function View(root, data, state) {
      this.root = root;
      this.state = state;
      this.lut = parseLut(data.cmap);
      this.digits = data.digits || 3;
      this.title = data.title || "";
      this.set = null;
      state.kind = data.kind || null;
      state.layer = data.layer || 0;
      state.head = data.head || 0;
      state.row = null;
      state.cell = null;
      state.view = data.view === "heads" ? "heads" : "heatmap";
      state.heads = null; // the head view: which heads draw their lines (one boolean each)
      state.filter = "all"; // the head view's sentence-pair filter: all, AA, AB, BA or BB
      state.token = null; // the head view's hovered or focused token: {side, index}
      state.lines = 0; // the number of lines the head view draws

      root.textContent = "";
      root.classList.add("attnlib-ex-ready");
      if (this.title) root.appendChild(el("div", "attnlib-ex-title", this.title));
      this.top = root.appendChild(el("div", "attnlib-ex-top"));
      this.pred = root.appendChild(el("div", "attnlib-ex-pred"));
      this.pred.hidden = true;
      this.pred.setAttribute("aria-live", "polite");

      const controls = root.appendChild(el("div", "attnlib-ex-row attnlib-ex-controls"));
      this.kinds = controls.appendChild(el("div", "attnlib-ex-kinds"));
      this.kinds.setAttribute("role", "group");
      this.kinds.setAttribute("aria-label", "Kind of attention");
      this.layerSelect = this.select(controls, "Layer", (v) =>
        this.choose(state.kind, v, state.head),
      );
      this.headSelect = this.select(controls, "Head", (v) =>
        this.pick(state.kind, state.layer, v),
      );
      this.views = controls.appendChild(el("div", "attnlib-ex-views"));
      this.views.setAttribute("role", "group");
      this.views.setAttribute("aria-label", "View of the chosen layer");
      for (const [name, label] of [
        ["heatmap", "Heatmap"],
        ["heads", "Head view"],
      ]) {
        this.views.appendChild(
          button(label, "attnlib-ex-view", () => this.setView(name)),
        ).dataset.view = name;
      }

      this.grid = root.appendChild(el("div", "attnlib-ex-grid"));
      this.grid.setAttribute("role", "group");
      this.grid.setAttribute(
        "aria-label",
        "Heads: click one (or move with the arrow keys, press Enter) to show it below",
      );
      this.empty = root.appendChild(el("div", "attnlib-ex-empty"));
      this.empty.hidden = true;

      this.main = root.appendChild(el("div", "attnlib-ex-main"));
      const figure = this.main.appendChild(el("div", "attnlib-ex-figure"));
      this.figureBox = figure;
      this.caption = figure.appendChild(el("div", "attnlib-ex-caption"));
      const heat = figure.appendChild(el("div", "attnlib-ex-heat"));
      heat.appendChild(el("div", "attnlib-ex-corner", "query \u2193 key \u2192"));
      this.cols = heat.appendChild(el("div", "attnlib-ex-cols"));
      heat.appendChild(el("div"));
      this.rows = heat.appendChild(el("div", "attnlib-ex-rows"));
      const wrap = heat.appendChild(el("div", "attnlib-ex-canvas"));
      this.canvas = wrap.appendChild(el("canvas", "attnlib-ex-map"));
      this.canvas.tabIndex = 0;
      this.canvas.setAttribute("role", "img");
      this.tooltip = wrap.appendChild(el("div", "attnlib-ex-tooltip"));
      this.tooltip.hidden = true;
      const bar = heat.appendChild(el("div", "attnlib-ex-bar"));
      this.barMax = bar.appendChild(el("span", "attnlib-ex-tick"));
      this.barCanvas = bar.appendChild(el("canvas", "attnlib-ex-barcanvas"));
      this.barMin = bar.appendChild(el("span", "attnlib-ex-tick"));
      this.legend = figure.appendChild(el("div", "attnlib-ex-legend"));
      const swatch = this.legend.appendChild(el("span", "attnlib-ex-swatch"));
      swatch.setAttribute("aria-hidden", "true");
      this.legend.appendChild(el("span", "", "masked: may not attend"));
      this.panel = this.main.appendChild(el("div", "attnlib-ex-panel"));
      this.panel.setAttribute("aria-live", "polite");
      this.buildHeadView();

      const actions = root.appendChild(el("div", "attnlib-ex-row attnlib-ex-actions"));
      this.pngButton = actions.appendChild(
        button("Export PNG", "attnlib-ex-export", () => this.exportPNG()),
      );
      this.svgButton = actions.appendChild(
        button("Export SVG", "attnlib-ex-export", () => this.exportSVG()),
      );
      this.pngButton.dataset.format = "png";
      this.svgButton.dataset.format = "svg";
      this.hint = actions.appendChild(el("span", "attnlib-ex-hint"));

      this.canvas.addEventListener("mousemove", (event) => {
        const cell = this.cellAt(event);
        if (cell) this.focusCell(cell[0], cell[1]);
      });
      this.canvas.addEventListener("mouseleave", () => this.focusCell(null, null));
      this.canvas.addEventListener("keydown", (event) => this.onKey(event));
      this.canvas.addEventListener("blur", () => this.focusCell(null, null));
    }

    View.prototype.select = (parent, label, onChange) => {
      const wrap = parent.appendChild(el("label", "attnlib-ex-select"));
      wrap.appendChild(el("span", "", `${label} `));
      const node = wrap.appendChild(el("select"));
      node.addEventListener("change", () => onChange(parseInt(node.value, 10)));
      return node;
    };

    View.prototype.kindData = function () {
      if (!this.set) return null;
      return this.set.kinds.find((k) => k.name === this.state.kind) || this.set.kinds[0];
    };

    // the shown map: weights (Lq * Lk), labels, mask, colour range
    View.prototype.current = function () {
      const kind = this.kindData();
      if (!kind?.query.length || !kind.key.length) return null;
      const map = kind.maps[this.state.layer][this.state.head];
      const range = colourRange(map, kind.mask);
      return { kind, map, mask: kind.mask, lq: kind.query.length, lk: kind.key.length, ...range };
    };

    function colourRange(map, mask) {
      let lo = 0;
      let hi = -Infinity;
      for (let i = 0; i < map.length; i++) {
        if (mask && !mask[i]) continue;
        if (map[i] > hi) hi = map[i];
        if (map[i] < lo) lo = map[i];
      }
      if (!(hi > lo)) hi = lo + 1;
      return { vmin: lo, vmax: hi };
    }

    View.prototype.colour = function (value, vmin, vmax) {
      const i = Math.round(((value - vmin) / (vmax - vmin)) * (this.lut.length - 1));
      return this.lut[Math.min(this.lut.length - 1, Math.max(0, i))];
    };

    View.prototype.fmt = function (value) {
      return value.toFixed(this.digits);
    };

    // new data (a new sentence, or the first render): keep the selection where it still exists
    View.prototype.setData = function (set) {
      this.set = set;
      const kind = this.kindData();
      this.state.kind = kind ? kind.name : null;
      if (kind) {
        this.state.layer = Math.min(Math.max(this.state.layer, 0), kind.layers - 1);
        this.state.head = Math.min(Math.max(this.state.head, 0), kind.heads - 1);
      }
      this.state.row = null;
      this.state.cell = null;
      this.state.token = null;
      this.renderControls();
      this.renderGrid();
      this.renderMap();
    };

    View.prototype.choose = function (kindName, layer, head) {
      const changedKind = kindName !== this.state.kind;
      this.state.kind = kindName;
      const kind = this.kindData();
      this.state.layer = Math.min(Math.max(layer, 0), kind.layers - 1);
      this.state.head = Math.min(Math.max(head, 0), kind.heads - 1);
      if (changedKind) {
        this.state.row = null;
        this.state.cell = null;
        this.state.token = null;
        this.renderControls();
        this.renderGrid();
      } else {
        this.syncControls();
      }
      this.renderMap();
    };

    View.prototype.renderControls = function () {
      const kind = this.kindData();
      this.kinds.textContent = "";
      const kinds = this.set ? this.set.kinds : [];
      this.kinds.hidden = kinds.length < 2;
      for (const k of kinds) {
        const b = button(k.label, "attnlib-ex-kind", () =>
          this.choose(k.name, this.state.layer, this.state.head),
        );
        b.dataset.kind = k.name;
        this.kinds.appendChild(b);
      }
      for (const [node, count, name] of [
        [this.layerSelect, kind ? kind.layers : 0, "layer"],
        [this.headSelect, kind ? kind.heads : 0, "head"],
      ]) {
        node.textContent = "";
        for (let i = 0; i < count; i++) {
          const option = el("option", "", `${name} ${i}`);
          option.value = String(i);
          node.appendChild(option);
        }
      }
      this.syncControls();
    };

    View.prototype.syncControls = function () {
      for (const b of this.kinds.children) {
        b.setAttribute("aria-pressed", String(b.dataset.kind === this.state.kind));
      }
      this.layerSelect.value = String(this.state.layer);
      this.headSelect.value = String(this.state.head);
      for (const b of this.grid.querySelectorAll(".attnlib-ex-thumb")) {
        const on = +b.dataset.layer === this.state.layer && +b.dataset.head === this.state.head;
        b.setAttribute("aria-pressed", String(on));
        b.tabIndex = on ? 0 : -1; // one tab stop for the grid: the arrow keys move within it
      }
    };

    View.prototype.renderGrid = function () {
      const kind = this.kindData();
      this.grid.textContent = "";
      if (!kind?.query.length || !kind.key.length) return;
      const size = Math.max(24, Math.min(64, Math.floor(560 / kind.heads) - 12));
      this.grid.style.gridTemplateColumns = `auto repeat(${kind.heads}, ${size + 8}px)`;
      // numbers only above the columns: "head 11" would not fit above a small thumbnail
      this.grid.appendChild(el("span", "attnlib-ex-gridlabel", "head"));
      for (let h = 0; h < kind.heads; h++)
        this.grid.appendChild(el("span", "attnlib-ex-gridlabel", String(h)));
      for (let l = 0; l < kind.layers; l++) {
        this.grid.appendChild(el("span", "attnlib-ex-gridlabel", `layer ${l}`));
        for (let h = 0; h < kind.heads; h++) {
          const b = button("", "attnlib-ex-thumb", () => this.pick(kind.name, l, h));
          b.dataset.layer = String(l);
          b.dataset.head = String(h);
          b.setAttribute("aria-label", `${kind.label}: layer ${l}, head ${h}`);
          b.title = `layer ${l}, head ${h}`;
          b.addEventListener("keydown", (event) => this.onGridKey(event, kind, l, h));
          const canvas = b.appendChild(el("canvas"));
          canvas.width = kind.key.length;
          canvas.height = kind.query.length;
          canvas.style.width = `${size}px`;
          canvas.style.height = `${size}px`;
          this.drawThumb(canvas, kind, kind.maps[l][h]);
          this.grid.appendChild(b);
        }
      }
      this.syncControls();
    };

    // the arrow keys (and Home, End) move the focus between thumbnails; Enter chooses one
    View.prototype.onGridKey = function (event, kind, l, h) {
      const moves = {
        ArrowUp: [l - 1, h],
        ArrowDown: [l + 1, h],
        ArrowLeft: [l, h - 1],
        ArrowRight: [l, h + 1],
        Home: [l, 0],
        End: [l, kind.heads - 1],
      };
      const move = moves[event.key];
      if (!move) return;
      event.preventDefault();
      const nl = Math.min(kind.layers - 1, Math.max(0, move[0]));
      const nh = Math.min(kind.heads - 1, Math.max(0, move[1]));
      const next = this.grid.querySelector(`[data-layer="${nl}"][data-head="${nh}"]`);
      if (next) next.focus();
    };

    View.prototype.drawThumb = function (canvas, kind, map) {
      const ctx = canvas.getContext("2d");
      const { vmin, vmax } = colourRange(map, kind.mask);
      const image = ctx.createImageData(canvas.width, canvas.height);
      for (let i = 0; i < map.length; i++) {
        const c = kind.mask && !kind.mask[i] ? [217, 217, 217] : this.colour(map[i], vmin, vmax);
        image.data.set([c[0], c[1], c[2], 255], 4 * i);
      }
      ctx.putImageData(image, 0, 0);
    };

    View.prototype.cellSize = (cur) =>
      Math.max(12, Math.min(34, Math.floor(340 / Math.max(cur.lq, cur.lk))));

    View.prototype.renderMap = function () {
      this.syncControls();
      const cur = this.current();
      this.main.hidden = !cur;
      this.pngButton.disabled = !cur;
      this.svgButton.disabled = !cur;
      if (!cur) {
        this.empty.hidden = false;
        this.empty.textContent = this.set?.emptyMessage
          ? this.set.emptyMessage
          : "Nothing to show.";
        this.panel.textContent = "";
        this.renderHeads();
        return;
      }
      this.empty.hidden = true;
      const { kind } = cur;
      const cs = this.cellSize(cur);
      this.cs = cs;
      this.caption.textContent = `${kind.label}: layer ${this.state.layer}, head ${this.state.head}`;
      const fontSize = `${Math.max(9, Math.min(12, cs - 2))}px`;

      this.rows.textContent = "";
      kind.query.forEach((label, i) => {
        const node = this.rows.appendChild(el("div", "attnlib-ex-rowlabel", label));
        node.style.height = `${cs}px`;
        node.style.lineHeight = `${cs}px`;
        node.style.fontSize = fontSize;
        node.title = label;
        node.tabIndex = 0;
        node.dataset.row = String(i);
        if (kind.unknownQuery?.[i]) node.classList.add("attnlib-ex-unknown");
        node.addEventListener("mouseenter", () => this.focusRow(i));
        node.addEventListener("focus", () => this.focusRow(i));
      });
      this.cols.textContent = "";
      kind.key.forEach((label, j) => {
        const node = this.cols.appendChild(el("div", "attnlib-ex-collabel", label));
        node.style.width = `${cs}px`;
        node.style.lineHeight = `${cs}px`;
        node.style.fontSize = fontSize;
        node.title = label;
        node.dataset.col = String(j);
        if (kind.unknownKey?.[j]) node.classList.add("attnlib-ex-unknown");
      });

      const ratio = window.devicePixelRatio || 1;
      this.canvas.width = Math.round(cur.lk * cs * ratio);
      this.canvas.height = Math.round(cur.lq * cs * ratio);
      this.canvas.style.width = `${cur.lk * cs}px`;
      this.canvas.style.height = `${cur.lq * cs}px`;
      this.canvas.dataset.kind = kind.name;
      this.canvas.dataset.layer = String(this.state.layer);
      this.canvas.dataset.head = String(this.state.head);
      this.canvas.dataset.rows = String(cur.lq);
      this.canvas.dataset.cols = String(cur.lk);
      this.canvas.setAttribute("aria-label", `Attention map, ${this.caption.textContent}`);

      this.barCanvas.width = 1;
      this.barCanvas.height = 128;
      this.barCanvas.style.height = `${Math.max(cur.lq * cs - 36, 40)}px`;
      const bctx = this.barCanvas.getContext("2d");
      for (let y = 0; y < 128; y++) {
        bctx.fillStyle = rgb(this.lut[Math.round(((127 - y) / 127) * (this.lut.length - 1))]);
        bctx.fillRect(0, y, 1, 1);
      }
      this.barMax.textContent = this.fmt(cur.vmax);
      this.barMin.textContent = this.fmt(cur.vmin);
      this.legend.hidden = !cur.mask || cur.mask.every((m) => m);
      this.draw();
      this.renderPanel();
      this.renderHeads();
    };

    // the big map, with the focused row highlighted (other rows dimmed) and the focused cell framed
    View.prototype.draw = function () {
      const cur = this.current();
      if (!cur) return;
      const ratio = this.canvas.width / (cur.lk * this.cs);
      const ctx = this.canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      drawCells(ctx, cur, this, 0, 0, this.cs);
      const row = this.state.row;
      if (row !== null) {
        ctx.fillStyle = "rgba(255,255,255,0.6)";
        for (let i = 0; i < cur.lq; i++) {
          if (i !== row) ctx.fillRect(0, i * this.cs, cur.lk * this.cs, this.cs);
        }
        ctx.lineWidth = 2;
        ctx.strokeStyle = "#000";
        ctx.strokeRect(1, row * this.cs + 1, cur.lk * this.cs - 2, this.cs - 2);
      }
      const cell = this.state.cell;
      if (cell) {
        ctx.lineWidth = 2;
        ctx.strokeStyle = "#fff";
        ctx.strokeRect(cell[1] * this.cs + 1, cell[0] * this.cs + 1, this.cs - 2, this.cs - 2);
        ctx.lineWidth = 1;
        ctx.strokeStyle = "#000";
        ctx.strokeRect(cell[1] * this.cs + 2.5, cell[0] * this.cs + 2.5, this.cs - 5, this.cs - 5);
      }
      for (const node of this.rows.children) {
        node.classList.toggle("attnlib-ex-active", +node.dataset.row === row);
      }
      for (const node of this.cols.children) {
        const j = +node.dataset.col;
        let tint = "";
        if (row !== null && !(cur.mask && !cur.mask[row * cur.lk + j])) {
          const share = (cur.map[row * cur.lk + j] - cur.vmin) / (cur.vmax - cur.vmin);
          tint = `rgba(255,170,0,${(0.7 * share).toFixed(3)})`;
        }
        node.style.backgroundColor = tint;
      }
    };

    // cells at (x0, y0), cs pixels each; masked cells grey and hatched
    function drawCells(ctx, cur, view, x0, y0, cs) {
      for (let i = 0; i < cur.lq; i++) {
        for (let j = 0; j < cur.lk; j++) {
          const k = i * cur.lk + j;
          const x = x0 + j * cs;
          const y = y0 + i * cs;
          if (cur.mask && !cur.mask[k]) {
            ctx.fillStyle = MASK_FILL;
            ctx.fillRect(x, y, cs, cs);
            ctx.save();
            ctx.beginPath();
            ctx.rect(x, y, cs, cs);
            ctx.clip();
            ctx.strokeStyle = MASK_HATCH;
            ctx.lineWidth = 1;
            ctx.beginPath();
            for (let s = -cs; s < cs; s += 5) {
              ctx.moveTo(x + s, y + cs);
              ctx.lineTo(x + s + cs, y);
            }
            ctx.stroke();
            ctx.restore();
          } else {
            ctx.fillStyle = rgb(view.colour(cur.map[k], cur.vmin, cur.vmax));
            ctx.fillRect(x, y, cs, cs);
          }
        }
      }
    }

    View.prototype.cellAt = function (event) {
      const cur = this.current();
      if (!cur) return null;
      const box = this.canvas.getBoundingClientRect();
      const i = Math.floor(((event.clientY - box.top) / box.height) * cur.lq);
      const j = Math.floor(((event.clientX - box.left) / box.width) * cur.lk);
      return i >= 0 && i < cur.lq && j >= 0 && j < cur.lk ? [i, j] : null;
    };

    View.prototype.focusRow = function (row) {
      this.state.row = row;
      this.state.cell = null;
      this.tooltip.hidden = true;
      this.draw();
      this.renderPanel();
    };

    View.prototype.focusCell = function (i, j) {
      const cur = this.current();
      if (i === null || !cur) {
        this.state.cell = null;
        this.tooltip.hidden = true;
        this.draw();
        return;
      }
      this.state.row = i;
      this.state.cell = [i, j];
      const k = i * cur.lk + j;
      const masked = cur.mask && !cur.mask[k];
      this.tooltip.textContent = "";
      this.tooltip.appendChild(
        el("div", "attnlib-ex-tipwhat", `${cur.kind.query[i]} \u2192 ${cur.kind.key[j]}`),
      );
      this.tooltip.appendChild(
        el("div", "", masked ? "masked (may not attend)" : `weight ${this.fmt(cur.map[k])}`),
      );
      this.tooltip.hidden = false;
      const left = Math.min((j + 1) * this.cs + 4, Math.max(cur.lk * this.cs - 120, 0));
      this.tooltip.style.left = `${left}px`;
      this.tooltip.style.top = `${Math.max(i * this.cs - 30, 0)}px`;
      this.draw();
      this.renderPanel();
    };

    View.prototype.onKey = function (event) {
      const cur = this.current();
      if (!cur) return;
      const moves = {
        ArrowUp: [-1, 0],
        ArrowDown: [1, 0],
        ArrowLeft: [0, -1],
        ArrowRight: [0, 1],
      };
      if (event.key === "Escape") {
        this.focusCell(null, null);
        return;
      }
      const move = moves[event.key];
      if (!move) return;
      event.preventDefault();
      const [i, j] = this.state.cell || [this.state.row === null ? 0 : this.state.row, 0];
      const ni = Math.min(cur.lq - 1, Math.max(0, i + (this.state.cell ? move[0] : 0)));
      const nj = Math.min(cur.lk - 1, Math.max(0, j + (this.state.cell ? move[1] : 0)));
      this.focusCell(ni, nj);
    };

    // the numbers of the focused row: where that query attends
    View.prototype.renderPanel = function () {
      const cur = this.current();
      this.panel.textContent = "";
      if (!cur) return;
      const row = this.state.row;
      if (row === null) {
        this.panel.appendChild(el("div", "attnlib-ex-subtitle", "Weights"));
        this.panel.appendChild(
          el("div", "attnlib-ex-hint", "Hover or focus a query (row) to see where it attends."),
        );
        return;
      }
      const head = this.panel.appendChild(el("div", "attnlib-ex-subtitle"));
      head.appendChild(document.createTextNode("Query "));
      head.appendChild(el("q", "attnlib-ex-token", cur.kind.query[row]));
      head.appendChild(document.createTextNode(` (position ${row}) attends to:`));
      const list = this.panel.appendChild(el("div", "attnlib-ex-weights"));
      for (let j = 0; j < cur.lk; j++) {
        const k = row * cur.lk + j;
        const masked = cur.mask && !cur.mask[k];
        const line = list.appendChild(el("div", "attnlib-ex-weight"));
        if (this.state.cell && this.state.cell[1] === j) line.classList.add("attnlib-ex-active");
        line.appendChild(el("span", "attnlib-ex-wlabel", cur.kind.key[j])).title = cur.kind.key[j];
        const track = line.appendChild(el("span", "attnlib-ex-wtrack"));
        const fill = track.appendChild(el("span", "attnlib-ex-wfill"));
        const share = masked ? 0 : (cur.map[k] - cur.vmin) / (cur.vmax - cur.vmin);
        fill.style.width = `${(100 * Math.max(0, Math.min(1, share))).toFixed(1)}%`;
        line.appendChild(
          el("span", "attnlib-ex-wvalue", masked ? "masked" : this.fmt(cur.map[k])),
        );
      }
    };

    View.prototype.setPrediction = function (pairs, caption) {
      this.pred.textContent = "";
      this.pred.hidden = !pairs?.length;
      if (this.pred.hidden) return;
      this.pred.appendChild(el("div", "attnlib-ex-subtitle", caption || "Prediction"));
      const values = pairs.map((p) => p[1]);
      const best = values.indexOf(Math.max(...values));
      const scale = Math.max(1, ...values);
      pairs.forEach(([name, value], i) => {
        const line = this.pred.appendChild(el("div", "attnlib-ex-predline"));
        if (i === best) line.classList.add("attnlib-ex-best");
        line.appendChild(el("span", "attnlib-ex-predlabel", name)).title = name;
        const track = line.appendChild(el("span", "attnlib-ex-predtrack"));
        const fill = track.appendChild(el("span", "attnlib-ex-predfill"));
        fill.style.width = `${(100 * Math.max(0, value / scale)).toFixed(1)}%`;
        line.appendChild(el("span", "attnlib-ex-predvalue", value.toFixed(3)));
      });
    };

    // -- the head view (BertViz's, Vig 2019, arXiv:1904.02679): one layer, every head -----

    // one colour per head (matplotlib's tab10, then two more), repeated past twelve heads
    const HEAD_COLOURS = [
      "#1f77b4",
      "#ff7f0e",
      "#2ca02c",
      "#d62728",
      "#9467bd",
      "#8c564b",
      "#e377c2",
      "#7f7f7f",
      "#bcbd22",
      "#17becf",
      "#393b79",
      "#ad494a",
    ];
    const HV_ROW = 20; // pixels per token
    const HV_TOP = 26; // room for the column titles
    const HV_GAP = 240; // between the two columns of tokens
    const HV_FONT = "12px sans-serif";
    const FILTERS = [
      ["all", "All", "all queries and keys"],
      ["AA", "A \u2192 A", "queries in text A, keys in text A"],
      ["AB", "A \u2192 B", "queries in text A, keys in text B"],
      ["BA", "B \u2192 A", "queries in text B, keys in text A"],
      ["BB", "B \u2192 B", "queries in text B, keys in text B"],
    ];

    function headColour(h) {
      return HEAD_COLOURS[h % HEAD_COLOURS.length];
    }

    View.prototype.buildHeadView = function () {
      const hv = this.main.appendChild(el("div", "attnlib-ex-headview"));
      this.hv = hv;
      this.hvCaption = hv.appendChild(el("div", "attnlib-ex-caption"));
      const heads = hv.appendChild(el("div", "attnlib-ex-row attnlib-ex-hvheadrow"));
      heads.appendChild(el("span", "attnlib-ex-hint", "Heads:"));
      this.hvHeads = heads.appendChild(el("div", "attnlib-ex-hvheads"));
      this.hvHeads.setAttribute("role", "group");
      this.hvHeads.setAttribute("aria-label", "Heads whose lines are drawn");
      this.hvAll = heads.appendChild(
        button("All", "attnlib-ex-hvall", () => this.setHeads(() => true)),
      );
      this.hvAll.setAttribute("aria-label", "All: show all heads");
      this.hvNone = heads.appendChild(
        button("None", "attnlib-ex-hvall", () => this.setHeads(() => false)),
      );
      this.hvNone.setAttribute("aria-label", "None: hide all heads");
      const filter = hv.appendChild(el("div", "attnlib-ex-row attnlib-ex-hvfilterrow"));
      filter.appendChild(el("span", "attnlib-ex-hint", "Sentence pair, query \u2192 key:"));
      this.hvFilter = filter.appendChild(el("div", "attnlib-ex-hvfilter"));
      this.hvFilter.setAttribute("role", "group");
      this.hvFilter.setAttribute("aria-label", "Sentence pair: which queries and keys");
      for (const [name, label, description] of FILTERS) {
        const b = button(label, "attnlib-ex-hvpair", () => this.setFilter(name));
        b.dataset.filter = name;
        b.setAttribute("aria-label", `${label}: ${description}`);
        b.title = description;
        this.hvFilter.appendChild(b);
      }
      const legend = filter.appendChild(el("span", "attnlib-ex-hint attnlib-ex-hvlegend"));
      legend
        .appendChild(el("span", "attnlib-ex-hvswatch attnlib-ex-segA"))
        .setAttribute("aria-hidden", "true");
      legend.appendChild(document.createTextNode(" text A "));
      legend
        .appendChild(el("span", "attnlib-ex-hvswatch attnlib-ex-segB"))
        .setAttribute("aria-hidden", "true");
      legend.appendChild(document.createTextNode(" text B"));
      this.hvFilterRow = filter;
      this.hvSvg = hv.appendChild(svgEl("svg", { class: "attnlib-ex-hvsvg", role: "group" }));
      this.hvLines = this.hvSvg.appendChild(svgEl("g", { class: "attnlib-ex-hvlines" }));
      this.hvLines.setAttribute("aria-hidden", "true");
      this.hvTokens = this.hvSvg.appendChild(svgEl("g", { class: "attnlib-ex-hvtokens" }));
      this.hvTokenKey = null;
      this.hvInfo = hv.appendChild(el("div", "attnlib-ex-hvinfo"));
      this.hvInfo.setAttribute("aria-live", "polite");
      this.hvSvg.addEventListener("mouseleave", () => this.setToken(this.focusedToken()));
    };

    View.prototype.setView = function (name) {
      this.state.view = name;
      this.state.token = null;
      this.renderMap();
    };

    // a head chosen in the grid or the Head menu; the head view shows it alone
    View.prototype.pick = function (kindName, layer, head) {
      this.choose(kindName, layer, head);
      if (this.state.view === "heads") this.setHeads((h) => h === this.state.head);
    };

    View.prototype.setHeads = function (on) {
      const kind = this.kindData();
      if (!kind) return;
      this.state.heads = Array.from({ length: kind.heads }, (_, h) => Boolean(on(h)));
      this.renderHeads();
    };

    View.prototype.toggleHead = function (h) {
      this.state.heads[h] = !this.state.heads[h];
      this.renderHeads();
    };

    View.prototype.setFilter = function (name) {
      this.state.filter = name;
      this.renderHeads();
    };

    View.prototype.setToken = function (token) {
      const same =
        token === this.state.token ||
        (token &&
          this.state.token &&
          token.side === this.state.token.side &&
          token.index === this.state.token.index);
      if (same) return;
      this.state.token = token;
      this.drawLines();
    };

    // the token that has the keyboard focus, if any
    View.prototype.focusedToken = function () {
      const node = document.activeElement;
      if (!node || !this.hvTokens.contains(node)) return null;
      return { side: node.dataset.side, index: +node.dataset.index };
    };

    View.prototype.renderHeads = function () {
      const on = this.state.view === "heads";
      const cur = this.current();
      for (const b of this.views.children) {
        b.setAttribute("aria-pressed", String(b.dataset.view === this.state.view));
      }
      this.figureBox.hidden = on;
      this.panel.hidden = on;
      this.hv.hidden = !on || !cur;
      this.pngButton.hidden = on;
      this.svgButton.hidden = on;
      this.hint.textContent = on
        ? "Hover or focus a token to see only its lines; the arrow keys move between tokens, " +
          "Escape shows all lines again."
        : "Hover a row label or a cell (or focus the map and use the arrow keys).";
      if (!on || !cur) return;
      const kind = cur.kind;
      if (!this.state.heads || this.state.heads.length !== kind.heads) {
        this.state.heads = Array.from({ length: kind.heads }, () => true);
      }
      if (this.hvHeads.children.length !== kind.heads) {
        this.hvHeads.textContent = "";
        for (let h = 0; h < kind.heads; h++) {
          const b = button("", "attnlib-ex-hvhead", () => this.toggleHead(h));
          b.dataset.head = String(h);
          b.style.setProperty("--attnlib-head", headColour(h));
          b.appendChild(el("span", "attnlib-ex-hvdot")).setAttribute("aria-hidden", "true");
          b.appendChild(document.createTextNode(String(h)));
          b.setAttribute("aria-label", `head ${h}`);
          b.title = `head ${h}: show or hide its lines`;
          this.hvHeads.appendChild(b);
        }
      }
      for (const b of this.hvHeads.children) {
        b.setAttribute("aria-pressed", String(this.state.heads[+b.dataset.head]));
      }
      const pair = Boolean(kind.segments);
      this.hvFilterRow.hidden = !pair;
      if (!pair) this.state.filter = "all";
      for (const b of this.hvFilter.children) {
        b.setAttribute("aria-pressed", String(b.dataset.filter === this.state.filter));
      }
      const shown = this.state.heads.filter(Boolean).length;
      this.hvCaption.textContent =
        `${kind.label}: layer ${this.state.layer}, ` +
        `${shown} of ${kind.heads} head${kind.heads === 1 ? "" : "s"}`;
      this.buildTokens(kind);
      this.drawLines();
    };

    // the two columns of tokens (rebuilt only for new labels: a rebuild would lose the focus)
    View.prototype.buildTokens = function (kind) {
      const key = JSON.stringify([kind.name, kind.query, kind.key, kind.segments || null]);
      if (key === this.hvTokenKey) return;
      this.hvTokenKey = key;
      const ctx = document.createElement("canvas").getContext("2d");
      ctx.font = HV_FONT;
      const fit = (t) => fitLabel(ctx, t, 130);
      const widest = (labels) =>
        Math.max(48, ...labels.map((t) => Math.ceil(ctx.measureText(fit(t)).width)));
      const wq = widest(kind.query) + 12;
      const wk = widest(kind.key) + 12;
      const n = Math.max(kind.query.length, kind.key.length);
      const width = wq + HV_GAP + wk;
      const height = HV_TOP + n * HV_ROW + 4;
      this.hvGeometry = { x1: wq, x2: wq + HV_GAP };
      for (const [k, v] of Object.entries({
        width,
        height,
        viewBox: `0 0 ${width} ${height}`,
        "aria-label":
          `Head view of ${kind.label}: ${kind.query.length} queries on the left, ` +
          `${kind.key.length} keys on the right, a line from each query to each key`,
      })) {
        this.hvSvg.setAttribute(k, String(v));
      }
      this.hvTokens.textContent = "";
      const seg = kind.segments || null;
      this.hvTokens.appendChild(
        svgEl(
          "text",
          { x: wq - 6, y: 14, "text-anchor": "end", class: "attnlib-ex-hvtitle" },
          "query",
        ),
      );
      this.hvTokens.appendChild(
        svgEl("text", { x: wq + HV_GAP + 6, y: 14, class: "attnlib-ex-hvtitle" }, "key"),
      );
      for (const [side, labels] of [
        ["query", kind.query],
        ["key", kind.key],
      ]) {
        const unknown = side === "query" ? kind.unknownQuery : kind.unknownKey;
        labels.forEach((label, i) => {
          const y = HV_TOP + i * HV_ROW;
          const left = side === "query";
          const segment = seg ? ` (text ${seg[i] ? "B" : "A"})` : "";
          const g = svgEl("g", {
            class: `attnlib-ex-hvtoken${seg ? (seg[i] ? " attnlib-ex-segB" : " attnlib-ex-segA") : ""}`,
            tabindex: side === "query" && i === 0 ? 0 : -1,
            role: "button",
            "data-side": side,
            "data-index": i,
            "aria-label": `${side} ${i}: ${label}${segment}`,
          });
          g.appendChild(
            svgEl("rect", {
              class: "attnlib-ex-hvbox",
              x: left ? 2 : wq + HV_GAP + 2,
              y: y + 1,
              width: (left ? wq : wk) - 6,
              height: HV_ROW - 2,
              rx: 3,
            }),
          );
          const text = svgEl(
            "text",
            {
              x: left ? wq - 6 : wq + HV_GAP + 6,
              y: y + HV_ROW / 2 + 4,
              "text-anchor": left ? "end" : "start",
              class: unknown?.[i] ? "attnlib-ex-unknown" : "",
            },
            fit(label),
          );
          text.appendChild(svgEl("title", {}, `${label}${segment}`));
          g.appendChild(text);
          g.addEventListener("mouseenter", () => this.setToken({ side, index: i }));
          g.addEventListener("focus", () => {
            for (const node of this.hvTokens.querySelectorAll("[tabindex]")) node.tabIndex = -1;
            g.tabIndex = 0;
            this.setToken({ side, index: i });
          });
          g.addEventListener("blur", () => this.setToken(null));
          g.addEventListener("keydown", (event) => this.onTokenKey(event, side, i));
          this.hvTokens.appendChild(g);
        });
      }
    };

    View.prototype.onTokenKey = function (event, side, i) {
      const kind = this.kindData();
      const count = (s) => (s === "query" ? kind.query.length : kind.key.length);
      let next = null;
      if (event.key === "ArrowUp") next = [side, i - 1];
      else if (event.key === "ArrowDown") next = [side, i + 1];
      else if (event.key === "ArrowLeft") next = ["query", i];
      else if (event.key === "ArrowRight") next = ["key", i];
      else if (event.key === "Home") next = [side, 0];
      else if (event.key === "End") next = [side, count(side) - 1];
      else if (event.key === "Escape") {
        this.setToken(null);
        return;
      } else if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        this.setToken({ side, index: i });
        return;
      }
      if (!next) return;
      event.preventDefault();
      const index = Math.min(count(next[0]) - 1, Math.max(0, next[1]));
      const node = this.hvTokens.querySelector(`[data-side="${next[0]}"][data-index="${index}"]`);
      if (node) node.focus();
    };

    // the lines of the shown heads that pass the filter and the hovered or focused token
    View.prototype.drawLines = function () {
      const cur = this.current();
      if (!cur || this.state.view !== "heads" || !this.hvGeometry) return;
      const { kind, mask, lq, lk } = cur;
      const seg = kind.segments || null;
      const f = seg ? this.state.filter : "all";
      const wantQ = f === "all" ? null : f[0] === "B" ? 1 : 0;
      const wantK = f === "all" ? null : f[1] === "B" ? 1 : 0;
      const token = this.state.token;
      const onlyQ = token && token.side === "query" ? token.index : null;
      const onlyK = token && token.side === "key" ? token.index : null;
      const { x1, x2 } = this.hvGeometry;
      const lines = document.createDocumentFragment();
      let count = 0;
      let best = null;
      for (let h = 0; h < kind.heads; h++) {
        if (!this.state.heads[h]) continue;
        const map = kind.maps[this.state.layer][h];
        const colour = headColour(h);
        for (let i = 0; i < lq; i++) {
          if ((wantQ !== null && seg[i] !== wantQ) || (onlyQ !== null && i !== onlyQ)) continue;
          const y1 = HV_TOP + (i + 0.5) * HV_ROW;
          for (let j = 0; j < lk; j++) {
            if ((wantK !== null && seg[j] !== wantK) || (onlyK !== null && j !== onlyK)) continue;
            const k = i * lk + j;
            if (mask && !mask[k]) continue;
            const w = map[k];
            lines.appendChild(
              svgEl("line", {
                x1,
                y1,
                x2,
                y2: HV_TOP + (j + 0.5) * HV_ROW,
                stroke: colour,
                "stroke-opacity": Math.max(0, Math.min(1, w)).toFixed(3),
                "data-head": h,
                "data-query": i,
                "data-key": j,
              }),
            );
            count += 1;
            if (!best || w > best.w) best = { w, h, i, j };
          }
        }
      }
      this.hvLines.textContent = "";
      this.hvLines.appendChild(lines);
      this.state.lines = count;
      for (const node of this.hvTokens.querySelectorAll(".attnlib-ex-hvtoken")) {
        const side = node.dataset.side;
        const i = +node.dataset.index;
        const want = side === "query" ? wantQ : wantK;
        node.classList.toggle(
          "attnlib-ex-active",
          Boolean(token && token.side === side && token.index === i),
        );
        node.classList.toggle("attnlib-ex-dim", want !== null && seg[i] !== want);
      }
      this.hvInfo.textContent = this.describeLines(cur, count, best);
    };

    // in words, for everyone (and screen readers): what the lines show
    View.prototype.describeLines = function (cur, count, best) {
      const token = this.state.token;
      const what = `${count} line${count === 1 ? "" : "s"}`;
      if (!count || !best) return `${what}: no head shown or no pair left by the filter.`;
      const strongest =
        `the strongest is ${cur.kind.query[best.i]} \u2192 ${cur.kind.key[best.j]}, ` +
        `${this.fmt(best.w)} in head ${best.h}`;
      if (!token) return `${what}; ${strongest}.`;
      const label = token.side === "query" ? cur.kind.query : cur.kind.key;
      return `${token.side} ${label[token.index]} (position ${token.index}): ${what}; ${strongest}.`;
    };

    // -- exports: the current map as a figure, PNG (canvas) or SVG (serialized DOM) -------------

    function fitLabel(ctx, label, width) {
      if (ctx.measureText(label).width <= width) return label;
      let cut = label;
      while (cut.length > 1 && ctx.measureText(`${cut}\u2026`).width > width)
        cut = cut.slice(0, -1);
      return `${cut}\u2026`;
    }

    View.prototype.figure = function () {
      const cur = this.current();
      const ctx = document.createElement("canvas").getContext("2d");
      ctx.font = EXPORT_FONT;
      const mark = (labels, unknown) => labels.map((t, i) => (unknown?.[i] ? `${t} (unk)` : t));
      const query = mark(cur.kind.query, cur.kind.unknownQuery).map((t) => fitLabel(ctx, t, 240));
      const key = mark(cur.kind.key, cur.kind.unknownKey).map((t) => fitLabel(ctx, t, 240));
      const widest = (labels) => Math.max(0, ...labels.map((t) => ctx.measureText(t).width));
      const title = [
        this.title,
        `${cur.kind.label}: layer ${this.state.layer}, head ${this.state.head}`,
      ]
        .filter(Boolean)
        .join(" \u2014 ");
      const cs = Math.max(14, Math.min(36, Math.floor(480 / Math.max(cur.lq, cur.lk))));
      const pad = 12;
      const x0 = pad + Math.ceil(widest(query)) + 8;
      const y0 = pad + 22 + Math.ceil(widest(key)) + 8;
      const bar = x0 + cur.lk * cs + 14;
      const ticks = [cur.vmax, (cur.vmin + cur.vmax) / 2, cur.vmin].map((v) => this.fmt(v));
      const masked = cur.mask && !cur.mask.every((m) => m);
      const width = Math.ceil(
        Math.max(bar + 12 + 6 + widest(ticks) + pad, pad + ctx.measureText(title).width + pad),
      );
      const height = y0 + cur.lq * cs + pad + (masked ? 22 : 0);
      return { cur, query, key, title, cs, pad, x0, y0, bar, ticks, masked, width, height };
    };

    View.prototype.fileName = function (ext) {
      const kind = this.state.kind || "attention";
      return `attention-${kind}-layer${this.state.layer}-head${this.state.head}.${ext}`;
    };

    View.prototype.exportPNG = function () {
      if (!this.current()) return;
      const f = this.figure();
      const scale = 2;
      const canvas = document.createElement("canvas");
      canvas.width = f.width * scale;
      canvas.height = f.height * scale;
      const ctx = canvas.getContext("2d");
      ctx.scale(scale, scale);
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, f.width, f.height);
      ctx.fillStyle = "#000";
      ctx.font = EXPORT_FONT;
      ctx.textBaseline = "middle";
      ctx.fillText(f.title, f.pad, f.pad + 8);
      ctx.textAlign = "right";
      f.query.forEach((t, i) => {
        ctx.fillText(t, f.x0 - 6, f.y0 + (i + 0.5) * f.cs);
      });
      ctx.textAlign = "left";
      f.key.forEach((t, j) => {
        ctx.save();
        ctx.translate(f.x0 + (j + 0.5) * f.cs, f.y0 - 6);
        ctx.rotate(-Math.PI / 2);
        ctx.fillText(t, 0, 0);
        ctx.restore();
      });
      drawCells(ctx, f.cur, this, f.x0, f.y0, f.cs);
      const h = f.cur.lq * f.cs;
      for (let y = 0; y < h; y++) {
        ctx.fillStyle = rgb(
          this.lut[Math.round(((h - 1 - y) / Math.max(h - 1, 1)) * (this.lut.length - 1))],
        );
        ctx.fillRect(f.bar, f.y0 + y, 12, 1);
      }
      ctx.fillStyle = "#000";
      f.ticks.forEach((t, i) => {
        ctx.fillText(t, f.bar + 18, f.y0 + (i * h) / 2 + (i === 0 ? 6 : i === 2 ? -6 : 0));
      });
      if (f.masked) {
        const y = f.y0 + h + f.pad;
        drawCells(ctx, { lq: 1, lk: 1, mask: [0], map: [0] }, this, f.x0, y, 14);
        ctx.fillStyle = "#000";
        ctx.fillText("masked: may not attend", f.x0 + 20, y + 7);
      }
      canvas.toBlob((blob) => download(blob, this.fileName("png")), "image/png");
    };

    View.prototype.svg = function () {
      const f = this.figure();
      const svg = svgEl("svg", {
        width: f.width,
        height: f.height,
        viewBox: `0 0 ${f.width} ${f.height}`,
        "font-family": "sans-serif",
        "font-size": 12,
      });
      const defs = svg.appendChild(svgEl("defs"));
      const hatch = defs.appendChild(
        svgEl("pattern", {
          id: "attnlib-hatch",
          patternUnits: "userSpaceOnUse",
          width: 5,
          height: 5,
        }),
      );
      hatch.appendChild(svgEl("rect", { width: 5, height: 5, fill: MASK_FILL }));
      hatch.appendChild(
        svgEl("path", {
          d: "M0,5 L5,0 M-1,1 L1,-1 M4,6 L6,4",
          stroke: MASK_HATCH,
          "stroke-width": 1,
        }),
      );
      const gradient = defs.appendChild(
        svgEl("linearGradient", { id: "attnlib-scale", x1: 0, y1: 1, x2: 0, y2: 0 }),
      );
      for (let s = 0; s <= 16; s++) {
        const c = this.lut[Math.round((s / 16) * (this.lut.length - 1))];
        gradient.appendChild(svgEl("stop", { offset: (s / 16).toFixed(4), "stop-color": rgb(c) }));
      }
      svg.appendChild(svgEl("rect", { width: f.width, height: f.height, fill: "#fff" }));
      svg.appendChild(svgEl("text", { x: f.pad, y: f.pad + 12 }, f.title));
      f.query.forEach((t, i) => {
        const y = f.y0 + (i + 0.5) * f.cs + 4;
        svg.appendChild(
          svgEl("text", { x: f.x0 - 6, y, "text-anchor": "end", class: "query" }, t),
        );
      });
      f.key.forEach((t, j) => {
        const x = f.x0 + (j + 0.5) * f.cs + 4;
        const y = f.y0 - 6;
        svg.appendChild(
          svgEl("text", { x, y, transform: `rotate(-90 ${x} ${y})`, class: "key" }, t),
        );
      });
      const cells = svg.appendChild(svgEl("g", { class: "cells" }));
      const cur = f.cur;
      for (let i = 0; i < cur.lq; i++) {
        for (let j = 0; j < cur.lk; j++) {
          const k = i * cur.lk + j;
          const masked = cur.mask && !cur.mask[k];
          const fill = masked
            ? "url(#attnlib-hatch)"
            : rgb(this.colour(cur.map[k], cur.vmin, cur.vmax));
          const rect = svgEl("rect", {
            x: f.x0 + j * f.cs,
            y: f.y0 + i * f.cs,
            width: f.cs,
            height: f.cs,
            fill,
          });
          rect.appendChild(
            svgEl(
              "title",
              {},
              `${cur.kind.query[i]} \u2192 ${cur.kind.key[j]}: ${masked ? "masked" : this.fmt(cur.map[k])}`,
            ),
          );
          cells.appendChild(rect);
        }
      }
      const h = cur.lq * f.cs;
      svg.appendChild(
        svgEl("rect", { x: f.bar, y: f.y0, width: 12, height: h, fill: "url(#attnlib-scale)" }),
      );
      f.ticks.forEach((t, i) => {
        svg.appendChild(svgEl("text", { x: f.bar + 18, y: f.y0 + (i * h) / 2 + 4 }, t));
      });
      if (f.masked) {
        const y = f.y0 + h + f.pad;
        svg.appendChild(
          svgEl("rect", { x: f.x0, y, width: 14, height: 14, fill: "url(#attnlib-hatch)" }),
        );
        svg.appendChild(svgEl("text", { x: f.x0 + 20, y: y + 11 }, "masked: may not attend"));
      }
      return `<?xml version="1.0" encoding="UTF-8"?>\n${new XMLSerializer().serializeToString(svg)}`;
    };

    View.prototype.exportSVG = function () {
      if (!this.current()) return;
      download(new Blob([this.svg()], { type: "image/svg+xml" }), this.fileName("svg"));
    };

    // -- the two explorers ---------------------------------------------------------------

    function mountAttention(root, data, inst) {
      const view = new View(root, data, inst.state);
      const kinds = data.kinds.map((k) => {
        const lq = k.query.length;
        const lk = k.key.length;
        const values = dequantize(k.weights, data.bits, k.lo, k.hi);
        const maps = [];
        for (let l = 0; l < k.layers; l++) {
          maps.push([]);
          for (let h = 0; h < k.heads; h++) {
            const start = (l * k.heads + h) * lq * lk;
            maps[l].push(values.subarray(start, start + lq * lk));
          }
        }
        return { ...k, maps, mask: k.mask ? unpackBits(k.mask, lq * lk) : null };
      });
      view.setData({ kinds, emptyMessage: "No tokens." });
      view.setPrediction(data.prediction, "Prediction");
      inst.view = view;
    }

    function mountClassifier(root, data, inst) {
      const model = new Classifier(data.model);
      const view = new View(root, data, inst.state);
      const box = view.top.appendChild(el("div", "attnlib-ex-row attnlib-ex-inputrow"));
      const label = box.appendChild(el("label", "attnlib-ex-inputlabel"));
      label.appendChild(el("span", "", "Sentence "));
      const input = label.appendChild(el("input", "attnlib-ex-input"));
      input.type = "text";
      input.value = data.text || "";
      input.spellcheck = false;
      input.autocomplete = "off";
      input.placeholder = "Type a sentence";
      if (data.examples?.length) {
        const examples = view.top.appendChild(el("div", "attnlib-ex-row attnlib-ex-examples"));
        examples.appendChild(el("span", "attnlib-ex-hint", "Examples:"));
        for (const text of data.examples) {
          examples.appendChild(
            button(text, "attnlib-ex-example", () => {
              input.value = text;
              update(text);
            }),
          ).title = text;
        }
      }
      const info = view.top.appendChild(el("div", "attnlib-ex-info"));
      const heads = model.config.nhead;
      const layers = model.config.num_layers;
      let timer = null;

      function update(text) {
        clearTimeout(timer);
        const enc = model.encode(text);
        const out = model.forward(enc.ids);
        const n = enc.ids.length;
        const unknown = enc.ids.map((id) => id === model.tokenizer.unk_idx);
        let mask = null;
        if (out.keep.some((k) => !k)) {
          mask = new Uint8Array(n * n);
          for (let i = 0; i < n * n; i++) mask[i] = out.keep[i % n] ? 1 : 0;
        }
        Object.assign(inst.state, {
          text,
          tokens: enc.tokens,
          ids: enc.ids,
          unknown: enc.unknown,
          truncated: enc.truncated,
          attention: out.attention,
          logits: out.logits,
          probs: out.probs,
          classes: model.classes,
          updates: (inst.state.updates || 0) + 1,
        });
        view.setData({
          kinds: [
            {
              name: "encoder",
              label: "encoder self-attention",
              layers,
              heads,
              query: enc.tokens,
              key: enc.tokens,
              unknownQuery: unknown,
              unknownKey: unknown,
              mask,
              maps: out.attention,
            },
          ],
          emptyMessage: "Type a sentence to see its attention.",
        });
        view.setPrediction(
          out.probs ? model.classes.map((c, i) => [c, out.probs[i]]) : null,
          "Predicted probabilities",
        );
        const parts = [`${enc.count} token${enc.count === 1 ? "" : "s"}`];
        if (enc.unknown.length)
          parts.push(`not in the vocabulary (read as <unk>): ${enc.unknown.join(" ")}`);
        if (enc.truncated) parts.push(`cut to the model's ${model.config.max_len} positions`);
        info.textContent = parts.join("; ");
      }

      input.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(() => update(input.value), DEBOUNCE_MS);
      });
      inst.view = view;
      inst.model = model;
      inst.input = input;
      inst.setText = (text) => {
        input.value = text;
        update(text);
      };
      update(input.value);
    }

    function mount(id) {
      const root = document.getElementById(id);
      const script = document.getElementById(`${id}-data`);
      if (!root || !script || instances[id]) return instances[id] || null;
      const inst = { id, root, state: {} };
      instances[id] = inst;
      try {
        const data = JSON.parse(script.textContent);
        inst.data = data;
        if (data.type === "classifier") mountClassifier(root, data, inst);
        else mountAttention(root, data, inst);
      } catch (error) {
        root.textContent = "";
        root.appendChild(el("div", "attnlib-ex-error", `attnlib explorer: ${error.message}`));
        inst.error = error;
        throw error;
      }
      return inst;
    }

    return { version: VERSION, instances, mount, tokenize, cleanText, Classifier };
  })();
