// Mentions: `@name` in a message (highlighted, more strongly when it names you) and
// the names of the people online offered while `@` is being typed in the composer.

// A mention starts at an `@` that does not follow a letter or digit (so an e-mail
// address is not one) and ends where the name does not go on into a letter or digit.
const WORD = /[\p{L}\p{N}_]/u;
const BARE_NAME = /^[\p{L}\p{N}_][\p{L}\p{N}_.\-]*/u;
// What is being typed before the caret: `@` and the start of a name (no white space).
const TYPED = /(?:^|[^\p{L}\p{N}_])@([^\s@]{0,32})$/u;
const MAX_SUGGESTIONS = 8;

const fold = (text) => String(text).toLocaleLowerCase();

/**
 * The mentions in `text`: [{start, end, name, me}], in order. `names` are the names
 * the page knows (online, authors): the longest one that follows an `@` wins, so
 * names with spaces ("alice (2)") are found; otherwise `@word` is a mention too.
 */
export function findMentions(text, names, me) {
  const found = [];
  const known = [...new Set([...names, ...(me ? [me] : [])].filter(Boolean).map(String))].sort(
    (a, b) => b.length - a.length,
  );
  const lowered = fold(text);
  let index = text.indexOf("@");
  while (index !== -1) {
    const before = index > 0 ? text[index - 1] : "";
    let end = -1;
    let name = "";
    if (!before || !WORD.test(before)) {
      for (const candidate of known) {
        const stop = index + 1 + candidate.length;
        if (lowered.startsWith(fold(candidate), index + 1) && !WORD.test(text[stop] || "")) {
          end = stop;
          name = candidate;
          break;
        }
      }
      if (end === -1) {
        const bare = text.slice(index + 1).match(BARE_NAME);
        if (bare) {
          name = bare[0].replace(/[.\-]+$/u, "");
          end = index + 1 + name.length;
        }
      }
    }
    if (end !== -1 && name) {
      found.push({ start: index, end, name, me: Boolean(me) && fold(name) === fold(me) });
      index = text.indexOf("@", end);
    } else {
      index = text.indexOf("@", index + 1);
    }
  }
  return found;
}

/** True when `text` mentions `me`. */
export function mentionsMe(text, me, names = []) {
  return Boolean(me) && findMentions(String(text), names, me).some((mention) => mention.me);
}

/**
 * The suggestions under the composer: typing `@` lists the people online whose
 * names start with what follows it; arrows or a tap pick one, Enter or Tab put it
 * in, Escape closes. The textarea keeps focus throughout (touch keyboards stay up).
 */
export class Suggest {
  /**
   * @param {HTMLTextAreaElement} input
   * @param {HTMLElement} list  a role=listbox element
   * @param {() => string[]} names  the names to offer (without your own)
   * @param {() => void} changed  called after a name was put in
   */
  constructor(input, list, names, changed) {
    this.input = input;
    this.list = list;
    this.names = names;
    this.changed = changed;
    this.options = [];
    this.active = 0;
    this.query = null;
    input.addEventListener("input", () => this.update());
    input.addEventListener("click", () => this.update());
    input.addEventListener("blur", () => this.close());
    input.addEventListener("keydown", (event) => this.keydown(event));
    // Keep the focus (and a phone's keyboard) in the textarea while picking.
    list.addEventListener("pointerdown", (event) => event.preventDefault());
    list.addEventListener("click", (event) => {
      const option = event.target instanceof Element ? event.target.closest("[role=option]") : null;
      if (option) this.choose(Number(option.dataset.index));
    });
  }

  get open() {
    return !this.list.hidden;
  }

  update() {
    const caret = this.input.selectionStart;
    const typed = this.input.value.slice(0, caret).match(TYPED);
    if (!typed || this.input.selectionEnd !== caret) {
      this.close();
      return;
    }
    this.query = typed[1];
    const start = fold(this.query);
    this.options = this.names()
      .filter((name) => fold(name).startsWith(start))
      .sort((a, b) => a.localeCompare(b, undefined, { sensitivity: "base" }))
      .slice(0, MAX_SUGGESTIONS);
    if (this.options.length === 0) {
      this.close();
      return;
    }
    this.active = Math.min(this.active, this.options.length - 1);
    this.render();
  }

  render() {
    const fragment = document.createDocumentFragment();
    this.options.forEach((name, index) => {
      const item = document.createElement("li");
      item.id = `suggest-${index}`;
      item.className = "suggest-option";
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", String(index === this.active));
      item.dataset.index = String(index);
      item.textContent = name;
      fragment.append(item);
    });
    this.list.replaceChildren(fragment);
    this.list.hidden = false;
    this.input.setAttribute("aria-activedescendant", `suggest-${this.active}`);
  }

  close() {
    if (this.list.hidden) return;
    this.list.hidden = true;
    this.list.replaceChildren();
    this.options = [];
    this.active = 0;
    this.input.removeAttribute("aria-activedescendant");
  }

  keydown(event) {
    if (!this.open || event.isComposing) return;
    const last = this.options.length - 1;
    switch (event.key) {
      case "ArrowDown":
        this.active = this.active >= last ? 0 : this.active + 1;
        this.render();
        break;
      case "ArrowUp":
        this.active = this.active <= 0 ? last : this.active - 1;
        this.render();
        break;
      case "Enter":
      case "Tab":
        this.choose(this.active);
        break;
      case "Escape":
        this.close();
        break;
      default:
        return;
    }
    // Consumed: Enter must not also send the message (the composer listens after this).
    event.preventDefault();
    event.stopImmediatePropagation();
  }

  /** Put `@name ` in place of the `@` and what was typed after it. */
  choose(index) {
    const name = this.options[index];
    if (name === undefined || this.query === null) return;
    const caret = this.input.selectionStart;
    const value = this.input.value;
    const start = caret - this.query.length - 1;
    const inserted = `@${name} `;
    this.input.value = value.slice(0, start) + inserted + value.slice(caret);
    const position = start + inserted.length;
    this.input.setSelectionRange(position, position);
    this.close();
    this.changed();
  }
}
