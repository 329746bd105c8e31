import { showForget } from "./api.js";

const main = document.getElementById("main");
const page = main.dataset.page;
const section = { run: "runs", workflow: "workflows" }[page] || page;
document.querySelector(`[data-nav="${section}"]`)?.setAttribute("aria-current", "page");
showForget();
const modules = { runs: "./runs.js", run: "./run.js", inbox: "./inbox.js",
                  workflows: "./workflows.js", workflow: "./workflow.js" };
import(modules[page]).then((m) => m.render(main, main.dataset.id));
