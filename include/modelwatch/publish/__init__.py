"""The publish stage: summary.json, HTML pages with SVG charts, the site index, the local mirror."""
