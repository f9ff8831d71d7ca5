from sasbert.cli import main

raise SystemExit(main())
