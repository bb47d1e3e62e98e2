"""Keep the built book free of references to other hosts.

Jupyter Book 1.x always loads sphinx-thebe, which puts an inline script naming
``https://unpkg.com/thebe...`` and a loader, ``sphinx-thebe.js``, on every page,
even with ``launch_buttons.thebe: false``. Nothing uses them here (there are no
launch buttons), and the book must work offline, so they are dropped.
"""


def _drop_thebe(app, pagename, templatename, context, doctree):
    scripts = context.get('script_files')
    if not scripts:
        return
    kept = []
    for js in scripts:
        filename = str(getattr(js, 'filename', '') or '')
        body = str(getattr(js, 'attributes', {}).get('body', ''))
        if filename.endswith('sphinx-thebe.js') or 'THEBE_JS_URL' in body:
            continue
        kept.append(js)
    scripts[:] = kept


def setup(app):
    # After sphinx-thebe and the theme have filled in the page's scripts.
    app.connect('html-page-context', _drop_thebe, priority=900)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
