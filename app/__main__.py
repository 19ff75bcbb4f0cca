from app.cli import main

if __name__ == "__main__":  # not when a spawned child (centre/isolated.py) imports it
    main()
