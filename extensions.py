"""Extensions, created unbound and bound in create_app."""
from flask_babel import Babel, gettext
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_wtf import CSRFProtect

from models.base import db

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = _l("请先登录。")
login_manager.localize_callback = gettext
login_manager.login_message_category = "warning"
csrf = CSRFProtect()
migrate = Migrate()
babel = Babel()

__all__ = ["babel", "csrf", "db", "login_manager", "migrate"]
