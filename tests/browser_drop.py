"""Dev check (not run by pytest or CI): drop workflow files onto ComfyUI's real web frontend and run them.

Why: only the frontend knows how a saved workflow becomes a graph (widget order,
missing-node and missing-model dialogs, combo values); the pytest suite checks
the JSON against the node definitions and runs API prompts, but never drops a
file on the canvas. This script does, in headless Chromium, as a user would::

    python tests/browser_drop.py --url http://127.0.0.1:8188 example_workflows/*.json --run --shots out/

For each file it reports the dialogs, toasts and alerts the drop produced,
what the frontend would send (``graphToPrompt``), and with ``--run`` the
result of pressing Run (polled from ``/history``). ``--save-api DIR`` writes the
frontend's API prompt for each file, ``--save-ui DIR`` the graph as the
frontend saves it. Needs ``pip install playwright`` (no browser download:
it drives ``--chromium``, default ``/usr/bin/chromium``) and a running ComfyUI.
Exit status 1 when any file showed an unexpected dialog or failed to run.
"""
import argparse
import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
#: Settings that keep first-run popups (template browser, tours) out of the way.
SETTINGS = {"Comfy.TutorialCompleted": True}
#: Words that identify ComfyUI's missing-models dialog (allowed when a model is absent).
MISSING_MODELS_MARK = "missing models"
#: Seconds to wait for a run to finish.
RUN_TIMEOUT = 900


def http_json(url: str, data=None):
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else None


async def open_app(browser, url: str):
    page = await browser.new_page(viewport={"width": 1600, "height": 1000})
    page.alerts, page.extension_errors = [], []
    page.on("dialog", lambda d: (page.alerts.append(d.message), asyncio.ensure_future(d.dismiss())))
    page.on("console", lambda m: page.extension_errors.append(m.text)
            if m.type == "error" and "loading extension" in m.text.lower() else None)
    await page.goto(url)
    await page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=180_000)
    await page.wait_for_timeout(1500)
    return page


async def visible_popups(page) -> dict:
    """Texts of the dialogs and toasts on screen."""
    return await page.evaluate("""() => {
        const shown = el => el.offsetParent !== null || getComputedStyle(el).position === 'fixed';
        const texts = sel => [...document.querySelectorAll(sel)].filter(shown).map(e => e.innerText.trim())
                                                                   .filter(t => t);
        return {dialogs: texts('.p-dialog'), toasts: texts('.p-toast-message')};
    }""")


async def close_popups(page) -> None:
    await page.keyboard.press("Escape")
    await page.evaluate("""() => {
        document.querySelectorAll('.p-toast-message .p-toast-close-button').forEach(b => b.click());
    }""")
    await page.wait_for_timeout(300)


async def drop_file(page, path: Path) -> None:
    """A real drop event on the canvas, carrying the file as a user's drag would."""
    text = path.read_text(encoding="utf-8")
    await page.evaluate("""([name, text]) => {
        const dt = new DataTransfer();
        dt.items.add(new File([text], name, {type: 'application/json'}));
        const canvas = document.querySelector('#graph-canvas') || document.querySelector('canvas');
        for (const type of ['dragenter', 'dragover', 'drop'])
            canvas.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true,
                                                      clientX: 800, clientY: 500}));
    }""", [path.name, text])
    await page.wait_for_timeout(2500)


async def press_run(page, url: str, timeout: float = RUN_TIMEOUT) -> dict:
    """Click Run and wait for the prompt it queued to finish; its /history entry.

    The server's cache is emptied first: a node ComfyUI takes from its cache sends
    nothing to the canvas, so only a fresh run shows what every node displays.
    """
    http_json(url + "/free", {"free_memory": True})
    await page.wait_for_timeout(1500)
    before = set(http_json(url + "/history?max_items=10000") or {})
    await page.get_by_role("button", name="Run", exact=True).first.click()
    deadline = time.time() + timeout
    while time.time() < deadline:
        await page.wait_for_timeout(1000)
        history = http_json(url + "/history?max_items=10000") or {}
        new = [entry for key, entry in history.items() if key not in before]
        done = [e for e in new if e.get("status", {}).get("completed") or
                e.get("status", {}).get("status_str") == "error"]
        if done:
            return done[0]
        popups = await visible_popups(page)
        if any("Prompt outputs failed validation" in d or "Required input is missing" in d
               for d in popups["dialogs"] + popups["toasts"]):
            return {"status": {"status_str": "refused", "messages": popups}}
    return {"status": {"status_str": "timeout"}}


def execution_error(entry: dict) -> str:
    for kind, data in entry.get("status", {}).get("messages", []) or []:
        if kind == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_message')}"
    return ""


async def on_canvas(page) -> list:
    """What the pack's nodes show after a run: their text box and the number of preview images."""
    return await page.evaluate("""() => window.app.graph.nodes.filter(n => n.type.startsWith('DeepOT_')).map(n => ({
        id: n.id, type: n.type,
        text: (n.widgets || []).find(w => w.name === 'deepot_result')?.value ?? null,
        images: ((window.app.nodeOutputs || {})[String(n.id)]?.images || []).length}))
        .filter(n => n.text !== null || n.images > 0)""")


async def check_file(page, url: str, path: Path, args) -> dict:
    await close_popups(page)
    await page.evaluate("() => window.app.graph.clear()")
    page.alerts.clear()
    await drop_file(page, path)
    result = {"file": str(path), "alerts": list(page.alerts), "extension_errors": list(page.extension_errors),
              **await visible_popups(page)}
    result["nodes"] = await page.evaluate("() => window.app.graph.nodes.length")
    if args.shots:
        await page.screenshot(path=str(Path(args.shots) / f"{path.stem}_dropped.png"))
    prompt = json.loads(await page.evaluate("async () => { const p = await window.app.graphToPrompt(); "
                                            "return JSON.stringify({output: p.output, workflow: p.workflow}); }"))
    result["api_nodes"] = len(prompt["output"])
    if args.save_api:
        (Path(args.save_api) / f"{path.stem}.api.json").write_text(
            json.dumps(prompt["output"], indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.save_ui:
        (Path(args.save_ui) / path.name).write_text(
            json.dumps(prompt["workflow"], indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    unexpected = [d for d in result["dialogs"] if MISSING_MODELS_MARK not in d.lower()]
    result["missing_models_dialog"] = any(MISSING_MODELS_MARK in d.lower() for d in result["dialogs"])
    result["unexpected"] = unexpected + result["toasts"] + result["alerts"] + result["extension_errors"]
    if args.run:
        await close_popups(page)
        entry = await press_run(page, url)
        result["run"] = entry.get("status", {}).get("status_str")
        result["error"] = execution_error(entry)
        result["ui_outputs"] = {node: sorted(out) for node, out in (entry.get("outputs") or {}).items()}
        await page.wait_for_timeout(1500)
        result["on_canvas"] = await on_canvas(page)
        if args.shots:
            await page.screenshot(path=str(Path(args.shots) / f"{path.stem}_ran.png"))
            for node in result["on_canvas"]:
                await page.evaluate("""(id) => { const c = window.app.canvas; const n = window.app.graph.getNodeById(id);
                    c.ds.scale = 1; c.centerOnNode(n); c.setDirty(true, true); }""", node["id"])
                if node["images"]:  # previews load in the background
                    await page.wait_for_function("(id) => (window.app.graph.getNodeById(id).imgs || []).length",
                                                 arg=node["id"], timeout=15_000)
                await page.wait_for_timeout(600)
                await page.screenshot(path=str(Path(args.shots) / f"{path.stem}_node{node['id']}.png"))
    return result


async def check_help_page(page, display_name: str) -> dict:
    """Open a node's help page from the node library, as a user clicks its "?" button; what the frontend fetched."""
    fetched = []
    listener = lambda r: fetched.append((r.status, r.url.split("/extensions/", 1)[-1])) if "/docs/" in r.url else None
    page.on("response", listener)
    if not await page.locator("input[placeholder*='Search']").count():
        await page.get_by_role("button", name="Node Library (n)").first.click()
        await page.wait_for_timeout(1000)
    await page.locator("input[placeholder*='Search']").first.fill(display_name)
    await page.wait_for_timeout(1200)
    leaf = page.locator(".tree-leaf", has=page.get_by_text(display_name, exact=True)).first
    await leaf.hover()
    await leaf.locator(".help-button").click()
    await page.wait_for_timeout(1500)
    heading = await page.evaluate("""(name) => [...document.querySelectorAll('h1')].some(h => h.innerText.trim() === name)""",
                                  display_name)
    page.remove_listener("response", listener)
    return {"node": display_name, "fetched": fetched, "shown": heading}


async def close_help_page(page) -> None:
    back = page.locator("button:has(.pi-arrow-left)")
    if await back.count():
        await back.first.click()
        await page.wait_for_timeout(500)


async def main_async(args) -> int:
    from playwright.async_api import async_playwright

    url = args.url.rstrip("/")
    for key, value in SETTINGS.items():
        http_json(f"{url}/settings/{key}", value)
    for folder in (args.shots, args.save_api, args.save_ui):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
    failed = 0
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = await open_app(browser, url)
        for name in args.help_pages:
            result = await check_help_page(page, name)
            failed += not (result["shown"] and any(status == 200 for status, _ in result["fetched"]))
            print(json.dumps(result, ensure_ascii=False), flush=True)
            if args.shots:
                await page.screenshot(path=str(Path(args.shots) / f"help_{name.replace(' ', '_')}.png"))
            await close_help_page(page)
        for name in args.files:
            result = await check_file(page, url, Path(name), args)
            bad = bool(result["unexpected"]) or (args.run and result.get("run") != "success")
            failed += bad
            print(json.dumps(result, ensure_ascii=False), flush=True)
        await browser.close()
    checked = len(args.files) + len(args.help_pages)
    print(f"{checked - failed} of {checked} checks clean", file=sys.stderr)
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", help="workflow .json files (UI or API format)")
    parser.add_argument("--help-pages", nargs="*", default=[], metavar="NODE",
                        help="display names of nodes whose node-library help page to open")
    parser.add_argument("--url", default="http://127.0.0.1:8188")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--run", action="store_true", help="press Run and wait for the result")
    parser.add_argument("--shots", help="folder for screenshots after the drop and after the run")
    parser.add_argument("--save-api", help="folder for the frontend's API prompt of each file")
    parser.add_argument("--save-ui", help="folder for the graph as the frontend saves it")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
