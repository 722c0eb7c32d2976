"""The papers the experiment table compares with, and the references several of its modules share."""
from .schema import Reference

TTM_PAPER = 'TTM (ICLR 2024)'
ATKD_PAPER = 'ATKD (arXiv 2503.09030)'
#: The ATKD paper's tables (pairs, accuracies) could not be retrieved: rows of ATKD's methods have no number.
ATKD_NO_TABLES = Reference(ATKD_PAPER, 'not retrievable', None, note='the ATKD paper tables could not be '
                           'retrieved, so there is no published number to compare with')
