from sushitui.cli import main

raise SystemExit(main())
