"""The operator inbox: pages, JSON API and live feed, served by the webhook app."""
