"""How big each free-text input may be, in one place (README: API, Limits). A value over its
limit is refused with INVALID_ARGUMENT naming the field and the limit, and nothing is stored: an
import's settings travel in every one of its events, so a huge value would be paid for forever.
A connector may refuse less, by its service's own rules (a Mailchimp tag is at most 100)."""

# Characters of an access or refresh token: real ones are under 2,048 (JWTs included); a bigger
# value is a mistake or an attack on storage.
MAX_TOKEN = 8192
MAX_EXTERNAL_ACCOUNT = 255  # characters, before a connector's own check of its shape
MAX_DISPLAY_NAME = 200  # characters of an import's display name
MAX_CRITERIA_TEXT = 255  # characters of any text of a criteria (a tag, a list id, a stage)
MAX_LABELS = 100  # tags, or list ids, of an import or a CSV upload
MAX_TAG = 255  # characters of one tag
MAX_LIST_ID = 64  # characters of one list id
MAX_ACCOUNT_ID = 64  # characters of an account id
MAX_PLAN_LENGTH = 64  # characters of an account's plan
MAX_PAGE_TOKEN = 2048  # characters: a cursor holds a few ids and times

# No text may hold NUL: PostgreSQL's text columns cannot, and one stored in an event stopped the
# read model's projection for every account.
NO_NUL = "must not contain NUL characters"
