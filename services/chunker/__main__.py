from ragbus.runner import Served, run

from .main import create_app, get_settings

settings = get_settings()
run([Served(create_app(settings), settings.host, settings.port)], settings.log_level)
